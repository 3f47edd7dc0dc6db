//! Attachments: chunked, resumable uploads and ranged downloads (the seed's Asset endpoints).
//!
//! The rules live here: limits, file-name rules, content sniffing, `Range` parsing and the
//! assembly of chunks into stored pieces. The `AssetStore` port is in `chat-ports`; GridFS
//! (`chat-mongodb`) and SQLite (`chat-embedded`) implement it.
//!
//! An upload session belongs to one user and one file name, so two users uploading
//! `report.pdf` never meet. Chunks may arrive in any order and may be retried; a retried chunk
//! must carry the same bytes. Completing assembles the chunks into one stored file whose
//! content type is sniffed from its first bytes, never taken from the client.

use crate::contracts::assets::AssetError;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::contracts::messages::Attachment;
use crate::error::Error;

/// Longest accepted file name, in bytes.
pub const MAX_FILENAME_CHARS: usize = 255;

/// What a client may upload. From the `ASSET_*` environment variables (see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetLimits {
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Largest chunk, in bytes.
    pub max_chunk_bytes: usize,
    /// Most chunks in one upload.
    pub max_chunks: u32,
    /// An upload that receives nothing for this long expires, and its chunks are deleted.
    pub session_ttl: Duration,
    /// Content types accepted, as sniffed from the bytes.
    pub allowed_types: Vec<String>,
    /// Most bytes one user may hold, stored files and uploads in progress together (0: no
    /// limit).
    pub max_bytes_per_user: u64,
    /// Most uploads one user may have in progress at once.
    pub max_uploads_per_user: u32,
}

/// What one user holds in the asset store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssetUsage {
    /// Bytes of the files they stored.
    pub stored_bytes: u64,
    /// Uploads in progress.
    pub uploads: u32,
    /// Bytes received for the uploads in progress.
    pub pending_bytes: u64,
}

/// The content types accepted by default: images, PDF, audio, video, zip archives and text.
pub const DEFAULT_ALLOWED_TYPES: &str =
    "image/png,image/jpeg,image/gif,image/webp,application/pdf,\
video/mp4,video/webm,audio/mpeg,audio/ogg,application/zip,text/plain";

impl Default for AssetLimits {
    fn default() -> Self {
        AssetLimits {
            max_file_bytes: 100 * 1024 * 1024,
            max_chunk_bytes: 5 * 1024 * 1024,
            max_chunks: 10_000,
            session_ttl: Duration::from_secs(24 * 3600),
            allowed_types: DEFAULT_ALLOWED_TYPES.split(',').map(String::from).collect(),
            max_bytes_per_user: 1 << 30,
            max_uploads_per_user: 10,
        }
    }
}

impl AssetLimits {
    /// How often expired uploads are swept: a quarter of their lifetime, between 1 s and 5 min.
    pub fn sweep_interval(&self) -> Duration {
        (self.session_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// The largest upload request body: one chunk plus room for the form's other fields.
    pub fn max_upload_request_bytes(&self) -> usize {
        self.max_chunk_bytes + 64 * 1024
    }

    /// The checks a chunk passes before anything is stored.
    pub fn check_chunk(&self, chunk: &ChunkUpload) -> Result<(), Error> {
        check_filename(&chunk.filename)?;
        self.check_total(chunk.total_chunks)?;
        if chunk.index >= chunk.total_chunks {
            return Err(AssetError::ChunkIndexOutOfRange {
                total: chunk.total_chunks,
            }
            .into());
        }
        if chunk.bytes.is_empty() {
            return Err(AssetError::EmptyChunk.into());
        }
        if chunk.bytes.len() > self.max_chunk_bytes {
            return Err(AssetError::ChunkTooLarge {
                max: self.max_chunk_bytes,
            }
            .into());
        }
        if chunk.bytes.len() as u64 > self.max_file_bytes {
            return Err(self.file_too_large());
        }
        if chunk.index == 0 {
            self.check_type(&chunk.bytes)?;
        }
        Ok(())
    }

    /// Whether `owner`, holding `usage`, may store `chunk` (of a new upload when `new_upload`).
    pub fn check_room(
        &self,
        usage: AssetUsage,
        chunk_bytes: usize,
        new_upload: bool,
    ) -> Result<(), Error> {
        if new_upload && usage.uploads >= self.max_uploads_per_user {
            return Err(AssetError::TooManyUploads {
                max: self.max_uploads_per_user,
            }
            .into());
        }
        let after = usage.stored_bytes + usage.pending_bytes + chunk_bytes as u64;
        if self.max_bytes_per_user > 0 && after > self.max_bytes_per_user {
            return Err(AssetError::QuotaExceeded {
                max: self.max_bytes_per_user,
            }
            .into());
        }
        Ok(())
    }

    /// `totalChunks` is within bounds.
    pub fn check_total(&self, total_chunks: u32) -> Result<(), Error> {
        if total_chunks == 0 || total_chunks > self.max_chunks {
            return Err(AssetError::TotalChunksOutOfRange {
                max: self.max_chunks,
            }
            .into());
        }
        Ok(())
    }

    /// The content type sniffed from a file's first bytes, if it is allowed.
    pub fn check_type(&self, first_bytes: &[u8]) -> Result<&'static str, Error> {
        let sniffed = sniff(first_bytes);
        if self.allowed_types.iter().any(|t| t == sniffed) {
            Ok(sniffed)
        } else {
            Err(AssetError::TypeNotAccepted {
                sniffed: sniffed.to_string(),
            }
            .into())
        }
    }

    pub fn file_too_large(&self) -> Error {
        AssetError::FileTooLarge {
            max: self.max_file_bytes,
        }
        .into()
    }
}

/// A file name is a label, never a path: 1-255 bytes, no path separators, no control
/// characters, not `.` or `..`.
pub fn check_filename(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_FILENAME_CHARS
        && name.trim() == name
        && name != "."
        && name != ".."
        && !name.contains("..")
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AssetError::InvalidFilename {
            max: MAX_FILENAME_CHARS,
        }
        .into())
    }
}

/// The content type of a file from its first bytes (magic numbers). Unknown binary content is
/// `application/octet-stream`; valid UTF-8 without NUL bytes is `text/plain`.
pub fn sniff(bytes: &[u8]) -> &'static str {
    const SIGNATURES: &[(usize, &[u8], &str)] = &[
        (0, b"\x89PNG\r\n\x1a\n", "image/png"),
        (0, b"\xff\xd8\xff", "image/jpeg"),
        (0, b"GIF87a", "image/gif"),
        (0, b"GIF89a", "image/gif"),
        (0, b"%PDF-", "application/pdf"),
        (4, b"ftyp", "video/mp4"),
        (0, b"\x1a\x45\xdf\xa3", "video/webm"),
        (0, b"ID3", "audio/mpeg"),
        (0, b"\xff\xfb", "audio/mpeg"),
        (0, b"\xff\xf3", "audio/mpeg"),
        (0, b"OggS", "audio/ogg"),
        (0, b"PK\x03\x04", "application/zip"),
    ];
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    for (offset, magic, kind) in SIGNATURES {
        if bytes.len() >= offset + magic.len() && &bytes[*offset..offset + magic.len()] == *magic {
            return kind;
        }
    }
    let head = &bytes[..bytes.len().min(8192)];
    if !head.contains(&0) && utf8_prefix_is_valid(head) {
        return "text/plain";
    }
    "application/octet-stream"
}

/// Valid UTF-8, allowing a multi-byte character cut at the end of the sample.
fn utf8_prefix_is_valid(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4,
    }
}

/// The current time (for callers without a clock crate of their own).
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path under which an asset is downloaded.
pub fn asset_url(id: &str) -> String {
    format!("/assets/{id}")
}

/// The asset id in a URL this server gave out (`/assets/<id>`, possibly with scheme and host),
/// or `None` for any other URL.
pub fn asset_id_from_url(url: &str) -> Option<&str> {
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let id = path.strip_prefix("/assets/")?;
    (id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// One received chunk.
#[derive(Debug, Clone)]
pub struct ChunkUpload {
    pub owner_id: String,
    pub filename: String,
    pub index: u32,
    pub total_chunks: u32,
    pub bytes: Bytes,
}

/// Where an upload stands after a chunk was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    pub total_chunks: u32,
    pub received_chunks: u32,
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub filename: String,
    pub total_chunks: u32,
    /// Indices received so far, ascending.
    pub received: Vec<u32>,
    pub received_bytes: u64,
    pub expires_at: DateTime<Utc>,
}

impl UploadStatus {
    /// Whether `complete-upload` with `total_chunks` may assemble this upload: the same total,
    /// and every chunk there (the error lists the first missing ones).
    pub fn ready_to_complete(&self, total_chunks: u32) -> Result<(), Error> {
        if self.total_chunks != total_chunks {
            return Err(AssetError::ChunkCountMismatch {
                expected: self.total_chunks,
                given: total_chunks,
            }
            .into());
        }
        let missing = self.missing();
        if missing.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = missing.iter().take(20).map(u32::to_string).collect();
        Err(AssetError::ChunksMissing {
            detail: format!(
                "{} chunk(s) missing: {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > 20 { ", ..." } else { "" }
            ),
        }
        .into())
    }

    /// Indices still missing, ascending.
    pub fn missing(&self) -> Vec<u32> {
        let mut have = self.received.iter().peekable();
        (0..self.total_chunks)
            .filter(|i| {
                while have.next_if(|h| **h < *i).is_some() {}
                have.next_if_eq(&i).is_none()
            })
            .collect()
    }
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetRecord {
    pub id: String,
    pub owner_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// Readable by every signed-in user (a profile picture).
    pub public: bool,
    /// Groups whose members may read it (attached to a message there, or the group's image).
    pub groups: Vec<String>,
}

impl AssetRecord {
    pub fn url(&self) -> String {
        asset_url(&self.id)
    }

    /// The seed's message `attachment`, from what was stored (never from what a client claims).
    pub fn attachment(&self) -> Attachment {
        Attachment {
            filename: self.filename.clone(),
            url: self.url(),
            content_type: self.content_type.clone(),
            size: self.size,
        }
    }

    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}

/// A byte range of a file, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The numbers of the first and last stored pieces ([`FILE_PIECE_BYTES`]) the range touches.
    pub fn pieces(&self) -> (i64, i64) {
        let piece = FILE_PIECE_BYTES as u64;
        ((self.start / piece) as i64, (self.end / piece) as i64)
    }

    /// The part of stored piece `n`, holding `data`, inside the range; `None` when the piece is
    /// shorter than the file's recorded size says.
    pub fn slice_of<'a>(&self, n: i64, data: &'a [u8]) -> Option<&'a [u8]> {
        let offset = n as u64 * FILE_PIECE_BYTES as u64;
        let from = self.start.saturating_sub(offset) as usize;
        let to = ((self.end + 1).saturating_sub(offset) as usize).min(data.len());
        (from < to).then(|| &data[from..to])
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn whole(size: u64) -> Option<Self> {
        (size > 0).then(|| ByteRange {
            start: 0,
            end: size - 1,
        })
    }
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No header, or one this server answers with the whole file (several ranges, other units).
    Whole,
    /// One satisfiable range: answer 206.
    Partial(ByteRange),
    /// A well-formed range outside the file: answer 416.
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (RFC 9110 §14.1.2). Several ranges and
/// unknown units fall back to the whole file, which the RFC allows.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (first.is_empty(), last.is_empty()) {
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => Some(ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }),
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Whole,
        },
        (false, true) => match parse(first) {
            Some(start) if start < size => Some(ByteRange {
                start,
                end: size - 1,
            }),
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Whole,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    return RangeRequest::Unsatisfiable;
                }
                Some(ByteRange {
                    start,
                    end: end.min(size - 1),
                })
            }
            _ => return RangeRequest::Whole,
        },
        (true, true) => None,
    };
    range.map_or(RangeRequest::Whole, RangeRequest::Partial)
}

/// Bytes per piece of a stored file: GridFS's default chunk size, used by both stores.
pub const FILE_PIECE_BYTES: usize = 255 * 1024;

/// Cuts an upload's chunks, taken in order, into the pieces of the stored file, hashing and
/// counting the bytes on the way: the part of `complete` both stores share.
#[derive(Default)]
pub struct Assembler {
    hasher: Sha256,
    length: u64,
    pending: Vec<u8>,
    pieces: i64,
}

impl Assembler {
    /// Takes the next chunk; returns the pieces it completes, numbered from 0.
    pub fn push(&mut self, data: &[u8]) -> Vec<(i64, Vec<u8>)> {
        self.hasher.update(data);
        self.length += data.len() as u64;
        self.pending.extend_from_slice(data);
        let mut done = Vec::new();
        while self.pending.len() >= FILE_PIECE_BYTES {
            let rest = self.pending.split_off(FILE_PIECE_BYTES);
            done.push((self.pieces, std::mem::replace(&mut self.pending, rest)));
            self.pieces += 1;
        }
        done
    }

    /// The last, shorter piece if there is one, the file's length and its SHA-256 (hex).
    pub fn finish(self) -> (Option<(i64, Vec<u8>)>, u64, String) {
        let last = (!self.pending.is_empty()).then_some((self.pieces, self.pending));
        (last, self.length, hex(&self.hasher.finalize()))
    }
}

/// Longest picture URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;

/// A picture URL (`imageUrl`, `profileUrl`): http(s) or an absolute path, at most 2048
/// characters, no spaces or control characters. `field` names it in the error.
pub fn check_image_url(field: &str, url: &str) -> Result<(), Error> {
    let ok = (url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
        && url.chars().count() <= MAX_URL_CHARS
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AssetError::InvalidUrl {
            field: field.to_string(),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn file_names_never_become_paths() {
        for ok in ["report.pdf", "My photo (1).jpg", "résumé.txt", ".env"] {
            assert!(check_filename(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "x\0y",
            " lead",
            "trail ",
            "a..b",
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
        assert!(check_filename(&"a".repeat(256)).is_err());
    }

    #[test]
    fn content_types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), "image/jpeg");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42"), "video/mp4");
        assert_eq!(sniff("héllo wörld".as_bytes()), "text/plain");
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01\0"), "application/octet-stream");
        // A multi-byte character cut by the sample's end is still text.
        let mut text = "a".repeat(8191).into_bytes();
        text.extend("é".as_bytes());
        assert_eq!(sniff(&text), "text/plain");
    }

    #[test]
    fn chunks_are_checked_before_anything_is_stored() {
        let limits = AssetLimits {
            max_chunk_bytes: 10,
            max_file_bytes: 25,
            max_chunks: 4,
            ..AssetLimits::default()
        };
        let chunk = |index, total, bytes: &'static [u8]| ChunkUpload {
            owner_id: "u".into(),
            filename: "a.txt".into(),
            index,
            total_chunks: total,
            bytes: Bytes::from_static(bytes),
        };
        assert!(limits.check_chunk(&chunk(0, 3, b"hello")).is_ok());
        let code = |c| limits.check_chunk(&c).unwrap_err().code;
        assert_eq!(code(chunk(3, 3, b"x")), ErrorCode::Validation);
        assert_eq!(code(chunk(0, 5, b"x")), ErrorCode::Validation);
        assert_eq!(code(chunk(0, 0, b"x")), ErrorCode::Validation);
        assert_eq!(code(chunk(1, 3, b"")), ErrorCode::Validation);
        assert_eq!(
            code(chunk(1, 3, b"01234567890")),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            code(chunk(0, 3, b"\x7fELF\x02\x01\x01\0")),
            ErrorCode::UnsupportedMediaType
        );
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        let r = |start, end| Partial(ByteRange { start, end });
        assert_eq!(parse_range(None, 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), r(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), r(0, 99));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), r(50, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=x-y"), 100), Whole);
    }

    #[test]
    fn asset_ids_are_read_from_urls_we_gave_out() {
        let id = "665f1f77bcf86cd799439011";
        assert_eq!(asset_id_from_url(&format!("/assets/{id}")), Some(id));
        assert_eq!(
            asset_id_from_url(&format!("https://chat.example.com/assets/{id}")),
            Some(id)
        );
        assert_eq!(asset_id_from_url("/assets/../etc"), None);
        assert_eq!(asset_id_from_url("https://cdn.example.com/a.png"), None);
    }

    #[test]
    fn image_urls_must_be_web_addresses() {
        assert!(check_image_url("imageUrl", "https://cdn.example.com/a.png").is_ok());
        assert!(check_image_url("imageUrl", "/assets/665f1f77bcf86cd799439011").is_ok());
        assert!(check_image_url("imageUrl", "javascript:alert(1)").is_err());
        assert!(check_image_url("imageUrl", "https://a b").is_err());
    }

    #[test]
    fn files_are_cut_into_pieces_and_ranges_read_back_from_them() {
        let file: Vec<u8> = (0..FILE_PIECE_BYTES * 2 + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut assembler = Assembler::default();
        let mut pieces = Vec::new();
        for chunk in file.chunks(100_000) {
            pieces.extend(assembler.push(chunk));
        }
        let (last, length, sha) = assembler.finish();
        pieces.extend(last);
        assert_eq!((length, sha), (file.len() as u64, sha256_hex(&file)));
        assert_eq!(
            pieces
                .iter()
                .map(|(n, p)| (*n, p.len()))
                .collect::<Vec<_>>(),
            vec![(0, FILE_PIECE_BYTES), (1, FILE_PIECE_BYTES), (2, 1000)]
        );
        let range = ByteRange {
            start: FILE_PIECE_BYTES as u64 - 10,
            end: FILE_PIECE_BYTES as u64 * 2 + 9,
        };
        assert_eq!(range.pieces(), (0, 2));
        let read: Vec<u8> = pieces
            .iter()
            .filter_map(|(n, p)| range.slice_of(*n, p))
            .flatten()
            .copied()
            .collect();
        assert_eq!(read, file[range.start as usize..=range.end as usize]);
        assert_eq!(
            range.slice_of(2, &[]),
            None,
            "a piece shorter than recorded"
        );
    }

    #[test]
    fn missing_chunks_are_listed() {
        let status = UploadStatus {
            filename: "f".into(),
            total_chunks: 6,
            received: vec![0, 2, 3, 5],
            received_bytes: 0,
            expires_at: Utc::now(),
        };
        assert_eq!(status.missing(), vec![1, 4]);
    }
}
