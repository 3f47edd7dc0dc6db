// Attachments: `/assets/:id` needs the bearer token, which an <img src> or a plain link cannot
// send, so the bytes are fetched with it and shown through blob: URLs.

import type { Api } from "../api";
import type { Attachment } from "../types";
import { formatBytes, h } from "../util";

/** Object URLs by asset URL: an image re-rendered is not fetched again. Revoked on sign-out. */
const cache = new Map<string, Promise<string>>();

function objectUrl(api: Api, url: string): Promise<string> {
  let entry = cache.get(url);
  if (!entry) {
    entry = api.blob(url).then((blob) => URL.createObjectURL(blob));
    entry.catch(() => cache.delete(url)); // a failure is retried next time
    cache.set(url, entry);
  }
  return entry;
}

export function revokeAll(): void {
  for (const entry of cache.values()) entry.then(URL.revokeObjectURL, () => undefined);
  cache.clear();
}

/** An image inline, anything else as a download link that fetches on click. */
export function renderAttachment(api: Api, attachment: Attachment): HTMLElement {
  if (attachment.type.startsWith("image/")) {
    const img = h("img", { class: "attachment-image", alt: attachment.filename, "data-testid": "attachment-image" });
    const figure = h("figure", { class: "attachment" }, img);
    objectUrl(api, attachment.url).then(
      (src) => (img.src = src),
      () => figure.replaceChildren(h("span", { class: "attachment-error" }, `${attachment.filename}: could not load`)),
    );
    return figure;
  }
  const link = h(
    "a",
    {
      class: "attachment-link",
      href: "#",
      "data-testid": "attachment-link",
      onclick: (e: Event) => {
        e.preventDefault();
        objectUrl(api, attachment.url).then(
          (href) => h("a", { href, download: attachment.filename }).click(),
          () => link.classList.add("failed"),
        );
      },
    },
    h("span", { class: "attachment-icon", "aria-hidden": "true" }, extension(attachment.filename)),
    h("span", { class: "attachment-name" }, attachment.filename),
    h("span", { class: "attachment-size" }, formatBytes(attachment.size)),
  );
  return link;
}

/** "TXT" for notes.txt: the file icon's label. */
function extension(filename: string): string {
  const dot = filename.lastIndexOf(".");
  return dot > 0 ? filename.slice(dot + 1, dot + 5).toUpperCase() : "FILE";
}
