//! The README documents every error reason: its table is generated from the reason enums and
//! must not drift from them. `UPDATE_GOLDEN=1 cargo test -p chat-domain --test readme` rewrites it.

use chat_domain::error::reasons_table;

const START: &str =
    "<!-- reasons:start (generated: UPDATE_GOLDEN=1 cargo test -p chat-domain --test readme) -->\n";
const END: &str = "<!-- reasons:end -->";

#[test]
fn the_readme_lists_every_error_reason() {
    // The runner's directory at run time, not the one baked in at build time: a binary reused
    // from a build cache shared by two checkouts must read this checkout's README.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let path = std::path::Path::new(&dir).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(START)
        .expect("README lacks the reasons:start marker")
        + START.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("README lacks the reasons:end marker");
    let expected = reasons_table();
    if readme[start..end] != expected {
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let updated = format!("{}{}{}", &readme[..start], expected, &readme[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        panic!(
            "the README's error reasons differ from the code; regenerate with \
             UPDATE_GOLDEN=1 cargo test -p chat-domain --test readme"
        );
    }
}
