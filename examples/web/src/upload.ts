// Chunked uploads (README "Attachments"): every chunk through `POST /assets/upload` (multipart
// `chunk`, `filename`, `chunkIndex`, `totalChunks`), then `POST /assets/complete-upload`.

import { ApiError, type Api } from "./api";
import type { StoredFile } from "./types";
import { sleep } from "./util";

/** Well under the server's 5 MiB per chunk, and small enough for a progress bar that moves. */
const CHUNK_SIZE = 256 * 1024;
const ATTEMPTS_PER_CHUNK = 3;

/**
 * Uploads `file` and returns the stored file (its `url` goes into `attachment: {url}`).
 * `onProgress` gets the fraction sent, 0…1.
 *
 * An upload is keyed by the user and the file name, and the server keeps an unfinished one for
 * a day. Every chunk is sent, even one the server may already hold: the same bytes again are
 * accepted, so an interrupted upload of the same file simply completes, while a leftover upload
 * of another file with this name answers 409; that one is dropped and the upload starts over.
 */
export async function uploadFile(
  api: Api,
  file: File,
  onProgress: (fraction: number) => void,
): Promise<StoredFile> {
  const totalChunks = Math.max(1, Math.ceil(file.size / CHUNK_SIZE));
  for (let restart = 0; ; restart++) {
    try {
      for (let index = 0; index < totalChunks; index++) {
        await sendChunk(api, file, index, totalChunks, (sent) =>
          onProgress(Math.min(1, (index * CHUNK_SIZE + sent) / Math.max(1, file.size))),
        );
      }
      break;
    } catch (e) {
      const stale = e instanceof ApiError && (e.reason === "chunk_conflict" || e.reason === "upload_in_progress");
      if (!stale || restart > 0) throw e;
      await api.request("DELETE", `/assets/upload?filename=${encodeURIComponent(file.name)}`);
    }
  }
  onProgress(1);
  return api.post<StoredFile>("/assets/complete-upload", { filename: file.name, totalChunks });
}

/** One chunk, retried on network errors and on answers worth retrying (5xx, 429, upload_changed). */
async function sendChunk(
  api: Api,
  file: File,
  index: number,
  totalChunks: number,
  onProgress: (sent: number) => void,
): Promise<void> {
  const bytes = file.slice(index * CHUNK_SIZE, (index + 1) * CHUNK_SIZE);
  for (let attempt = 1; ; attempt++) {
    const form = new FormData();
    form.append("filename", file.name);
    form.append("chunkIndex", String(index));
    form.append("totalChunks", String(totalChunks));
    form.append("chunk", bytes, file.name);
    try {
      await api.upload("/assets/upload", form, (sent) => onProgress(Math.min(sent, bytes.size)));
      return;
    } catch (e) {
      const transient =
        !(e instanceof ApiError) || e.status >= 500 || e.status === 429 || e.reason === "upload_changed";
      if (!transient || attempt >= ATTEMPTS_PER_CHUNK) throw e;
      await sleep(500 * attempt);
    }
  }
}
