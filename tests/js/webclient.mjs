// The reference web client (examples/web) end to end, in a real browser: Debian's Chromium,
// headless, driven by playwright-core, two people (Ada and Bob) in two independent browser
// contexts, every step through the client's own UI and its data-testid attributes.
//
//   node tests/js/webclient.mjs <base URL of a chat-server that serves the client at />
//
// SCREENSHOTS: a directory to write PNG screenshots into (none by default). CHROMIUM: the
// browser (default /usr/bin/chromium). Prints one line per step passed; exits 0 when all
// passed, 1 naming the step that failed. Every wait is bounded, and so is the whole run.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium } from "./chromium.mjs";

const RUN_TIMEOUT_MS = 120_000;
const WAIT_MS = 10_000;
/** The client's history page size (PAGE_SIZE in examples/web/src/chat.ts). */
const PAGE_SIZE = 30;
/** Sent through Ada's socket so that history needs paging. */
const BULK_MESSAGES = 60;

const base = process.argv[2]?.replace(/\/+$/, "");
if (!base) {
  console.error("usage: node tests/js/webclient.mjs <base URL>");
  process.exit(2);
}
const screenshots = process.env.SCREENSHOTS;
if (screenshots) mkdirSync(screenshots, { recursive: true });

let current = "start";
const started = Date.now();
setTimeout(() => {
  console.error(`FAILED: ${current}: the run took longer than ${RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, RUN_TIMEOUT_MS).unref();

/** Runs one step: prints it when it passed, names it when it failed. */
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

let shots = 0;
async function shot(page, name) {
  if (!screenshots) return;
  shots += 1;
  await page.screenshot({ path: join(screenshots, `${String(shots).padStart(2, "0")}-${name}.png`) });
}

/** Waits until `fn(arg)` is truthy in the page; fails with `what` after `timeout`. */
async function until(page, what, fn, arg, timeout = WAIT_MS) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout, polling: 100 })).jsonValue();
  } catch (e) {
    throw new Error(`${what} (not within ${timeout} ms)${e.name === "TimeoutError" ? "" : `: ${e.message}`}`);
  }
}

/** The messages a page shows: seq (null while pending), text, and whether it is an image / link. */
function messagesOf(page) {
  return page.$$eval("[data-testid=message]", (nodes) =>
    nodes.map((n) => ({
      seq: n.dataset.seq ? Number(n.dataset.seq) : null,
      text: n.querySelector("[data-testid=message-text]")?.textContent ?? "",
      deleted: n.dataset.deleted === "true",
    })),
  );
}

const stamp = `${Date.now()}${Math.floor(Math.random() * 1e6)}`;
const people = {
  ada: { firstName: "Ada", lastName: "Lovelace", email: `ada.${stamp}@example.com` },
  bob: { firstName: "Bob", lastName: "Babbage", email: `bob.${stamp}@example.com` },
};
const groupName = `Engines ${stamp.slice(-6)}`;

const browser = await launchChromium();
const pageErrors = [];
async function personPage(who) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on("dialog", (dialog) => dialog.accept()); // "Delete this message?"
  return { context, page };
}

let failed = false;
try {
  const ada = await personPage("Ada");
  const bob = await personPage("Bob");
  let groupId;
  /** Types a text into the page's composer and sends it with Enter. */
  const say = async (page, text) => {
    await page.getByTestId("composer-input").fill(text);
    await page.getByTestId("composer-input").press("Enter");
  };
  const messageIn = (page, text) => page.locator("[data-testid=message]", { hasText: text });

  for (const [name, person] of [["Ada", ada], ["Bob", bob]]) {
    await step(`register ${name}`, async () => {
      const who = people[name.toLowerCase()];
      await person.page.goto(`${base}/`);
      await until(person.page, `the client's sign-in form at ${base}/ (is examples/web/dist served there?)`, () =>
        Boolean(document.querySelector("[data-testid=auth-view]")));
      await person.page.getByTestId("auth-tab-register").click();
      await person.page.getByTestId("register-first-name").fill(who.firstName);
      await person.page.getByTestId("register-last-name").fill(who.lastName);
      await person.page.getByTestId("register-email").fill(who.email);
      await person.page.getByTestId("register-password").fill("correct horse battery");
      await person.page.getByTestId("register-submit").click();
      await person.page.getByTestId("app-view").waitFor();
      await until(person.page, "the connection status says connected", () =>
        document.querySelector("[data-testid=connection-status]")?.dataset.state === "connected",
      );
      const shown = await person.page.getByTestId("current-user").textContent();
      check(shown === `${who.firstName} ${who.lastName}`, `the top bar shows ${JSON.stringify(shown)}`);
      if (name === "Ada") await shot(person.page, "signed-in");
    });
  }

  await step("Ada creates a group with Bob", async () => {
    const { page } = ada;
    await page.getByTestId("new-conversation").click();
    await page.getByTestId("new-group-name").fill(groupName);
    await page.getByTestId("user-search").fill(people.bob.email);
    const result = page.getByTestId("user-result").filter({ hasText: people.bob.email });
    await result.locator("input[type=checkbox]").check();
    await page.getByTestId("create-conversation").click();
    await until(page, "the new group opens", (name) =>
      document.querySelector("[data-testid=conversation-title]")?.textContent === name, groupName);
    groupId = await page.getByTestId("conversation").getAttribute("data-group-id");
    check(groupId, "the conversation names no group id");
  });

  await step("Bob sees the group appear live", async () => {
    await until(bob.page, "the group in Bob's list", (id) =>
      Boolean(document.querySelector(`[data-testid=group-item][data-group-id="${id}"]`)), groupId);
    const title = await bob.page.locator(`[data-testid=group-item][data-group-id="${groupId}"] [data-testid=group-name]`).textContent();
    check(title === groupName, `Bob's list names the group ${JSON.stringify(title)}`);
  });

  const bobsItem = `[data-testid=group-item][data-group-id="${groupId}"]`;
  await step("Ada sends a text; Bob sees it live with an unread badge", async () => {
    await say(ada.page, "Hello Bob");
    await until(ada.page, "Ada's message stored (✓)", () =>
      [...document.querySelectorAll("[data-testid=message][data-mine=true] [data-testid=receipt]")].some(
        (r) => r.dataset.state !== "sending"));
    await until(bob.page, "the message and an unread count of 1 in Bob's list", (sel) => {
      const item = document.querySelector(sel);
      return item?.querySelector("[data-testid=group-preview]")?.textContent?.includes("Hello Bob") &&
        item.querySelector("[data-testid=unread-badge]")?.textContent === "1";
    }, bobsItem);
  });

  await step("delivery receipts", async () => {
    const support = await until(bob.page, "Bob's client learns whether the server takes chat.message.delivered",
      () => window.__chat && window.__chat.deliveredSupport !== "unknown" && window.__chat.deliveredSupport);
    check(support === "yes", "the server refused chat.message.delivered");
    await until(ada.page, "✓✓ (delivered) on Ada's message", () =>
      document.querySelector("[data-testid=message][data-mine=true] [data-testid=receipt]")?.dataset.state === "delivered");
    console.log("     ✓✓ shown before Bob opened the conversation");
  });

  await step("Bob opens the conversation: badge cleared, Ada sees it seen", async () => {
    await bob.page.locator(bobsItem).click();
    await messageIn(bob.page, "Hello Bob").waitFor();
    await until(bob.page, "Bob's unread badge goes away", (sel) =>
      !document.querySelector(`${sel} [data-testid=unread-badge]`), bobsItem);
    await until(ada.page, "'Seen' on Ada's message", () => {
      const r = document.querySelector("[data-testid=message][data-mine=true] [data-testid=receipt]");
      return r?.dataset.state === "seen" && r.textContent.includes("Seen");
    });
  });

  await step("Bob types and replies; Ada sees the typing indicator, then the reply", async () => {
    await bob.page.getByTestId("composer-input").pressSequentially("Hi Ada", { delay: 30 });
    await until(ada.page, "'Bob is typing…' for Ada", () =>
      document.querySelector("[data-testid=typing-indicator]")?.textContent === "Bob is typing…");
    await bob.page.getByTestId("composer-input").press("Enter");
    await messageIn(ada.page, "Hi Ada").waitFor();
    await until(ada.page, "the typing indicator clears", () =>
      document.querySelector("[data-testid=typing-indicator]")?.textContent === "");
  });

  await step("Ada edits one message and deletes another; Bob sees both", async () => {
    await messageIn(ada.page, "Hello Bob").hover();
    await messageIn(ada.page, "Hello Bob").getByTestId("edit-message").click();
    await ada.page.getByTestId("edit-input").fill("Hello Bob, edited");
    await ada.page.getByTestId("edit-save").click();
    await messageIn(bob.page, "Hello Bob, edited").getByTestId("edited").waitFor();
    await say(ada.page, "a message to delete");
    await messageIn(bob.page, "a message to delete").waitFor();
    await messageIn(ada.page, "a message to delete").hover();
    await messageIn(ada.page, "a message to delete").getByTestId("delete-message").click();
    await until(bob.page, "the tombstone for Bob", () =>
      [...document.querySelectorAll("[data-testid=message][data-deleted=true]")].length === 1);
    await shot(ada.page, "conversation");
  });

  await step("Ada uploads an image with progress; Bob sees it inline", async () => {
    // A noisy PNG (does not compress), so it takes several chunks.
    const png = await ada.page.evaluate(() => {
      const canvas = Object.assign(document.createElement("canvas"), { width: 480, height: 320 });
      const ctx = canvas.getContext("2d");
      const pixels = ctx.createImageData(canvas.width, canvas.height);
      for (let i = 0; i < pixels.data.length; i++) pixels.data[i] = i % 4 === 3 ? 255 : Math.random() * 256;
      ctx.putImageData(pixels, 0, 0);
      return canvas.toDataURL("image/png").split(",")[1];
    });
    // Every percentage the progress bar shows.
    await ada.page.evaluate(() => {
      window.__percents = [];
      const bar = document.querySelector("[data-testid=upload]");
      new MutationObserver(() => window.__percents.push(Number(bar.dataset.percent)))
        .observe(bar, { attributes: true, attributeFilter: ["data-percent"] });
    });
    await ada.page.getByTestId("file-input").setInputFiles({
      name: "noise.png", mimeType: "image/png", buffer: Buffer.from(png, "base64"),
    });
    await until(ada.page, "the image in Ada's conversation", () =>
      [...document.querySelectorAll("[data-testid=attachment-image]")].some((i) => i.complete && i.naturalWidth > 0));
    const percents = await ada.page.evaluate(() => window.__percents);
    check(percents.some((p) => p > 0 && p < 100) && percents.at(-1) === 100,
      `the progress bar went ${JSON.stringify(percents)}`);
    const width = await until(bob.page, "the image inline for Bob", () => {
      const img = document.querySelector("[data-testid=attachment-image]");
      return img?.complete && img.naturalWidth;
    });
    check(width === 480, `Bob's image is ${width} px wide`);
    await shot(bob.page, "attachment");
  });

  await step("Bob uploads a text file; Ada gets a download link", async () => {
    const filename = `notes-${stamp.slice(-6)}.txt`;
    await bob.page.getByTestId("file-input").setInputFiles({
      name: filename, mimeType: "text/plain", buffer: Buffer.from("Notes on the engine\n"),
    });
    const link = ada.page.getByTestId("attachment-link").filter({ hasText: filename });
    await link.waitFor();
    const [download] = await Promise.all([ada.page.waitForEvent("download"), link.click()]);
    check(download.suggestedFilename() === filename, `the download is named ${download.suggestedFilename()}`);
    const stream = await download.createReadStream();
    let body = "";
    for await (const chunk of stream) body += chunk;
    check(body === "Notes on the engine\n", `the download holds ${JSON.stringify(body)}`);
  });

  await step("Bob drops off; Ada sends 3; Bob reconnects and gets them once, in order", async () => {
    const heldBefore = await bob.page.evaluate(() => Math.max(...[...document.querySelectorAll("[data-testid=message][data-seq]")].map((m) => Number(m.dataset.seq))));
    await bob.context.setOffline(true);
    await bob.page.evaluate(() => window.__chat.socket.io.engine.close());
    await until(bob.page, "Bob's status says reconnecting", () =>
      document.querySelector("[data-testid=connection-status]")?.dataset.state === "reconnecting");
    for (const n of [1, 2, 3]) await say(ada.page, `while you were away ${n}`);
    await until(ada.page, "Ada's 3 messages stored", () =>
      [...document.querySelectorAll("[data-testid=message]")].filter((m) =>
        m.textContent.includes("while you were away") && m.dataset.seq).length === 3);
    check(await bob.page.evaluate(() => !window.__chat.socket.connected), "Bob's socket reconnected while offline");
    await bob.context.setOffline(false);
    await until(bob.page, "Bob's status says connected again", () =>
      document.querySelector("[data-testid=connection-status]")?.dataset.state === "connected", undefined, 20_000);
    const handshake = await bob.page.evaluate((id) => window.__chat.lastHandshake?.lastSeq?.[id], groupId);
    check(handshake === heldBefore, `the reconnect's handshake named lastSeq ${handshake}, not ${heldBefore}`);
    await until(bob.page, "the 3 messages for Bob", () =>
      [...document.querySelectorAll("[data-testid=message]")].filter((m) => m.textContent.includes("while you were away")).length === 3);
    const shown = await messagesOf(bob.page);
    const away = shown.filter((m) => m.text.startsWith("while you were away")).map((m) => m.text);
    check(JSON.stringify(away) === JSON.stringify([1, 2, 3].map((n) => `while you were away ${n}`)),
      `Bob sees ${JSON.stringify(away)}`);
    const seqs = shown.map((m) => m.seq);
    check(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `Bob's messages are not in order or repeat: ${seqs}`);
    await shot(bob.page, "after-reconnect");
  });

  await step(`history: ${BULK_MESSAGES} more messages, Ada reloads and pages back`, async () => {
    const acked = await ada.page.evaluate(async ({ groupId, count }) => {
      let ok = 0;
      for (let i = 1; i <= count; i++) {
        const ack = await window.__chat.socket.timeout(10_000).emitWithAck("chat.message.send", {
          groupId, content: `bulk ${i}`, clientMessageId: crypto.randomUUID(),
        });
        if (ack.ok) ok += 1;
        await new Promise((r) => setTimeout(r, 75)); // under the 20 events per second a socket may send
      }
      return ok;
    }, { groupId, count: BULK_MESSAGES });
    check(acked === BULK_MESSAGES, `${acked} of ${BULK_MESSAGES} sends acknowledged`);
    const total = await ada.page.evaluate((id) => window.__chat.groups.get(id).countedSeq, groupId);

    await ada.page.reload();
    await until(ada.page, "the conversation again after the reload (signed in from sessionStorage)", (id) =>
      document.querySelector("[data-testid=conversation]")?.dataset.groupId === id &&
      document.querySelectorAll("[data-testid=message]").length > 0, groupId);
    check((await messagesOf(ada.page)).length === PAGE_SIZE, "the first page is not one page long");
    for (let pages = 2; ; pages++) {
      const more = ada.page.getByTestId("load-older");
      if (!(await more.isVisible())) break;
      check(pages <= Math.ceil(total / PAGE_SIZE), "more pages than messages");
      const before = (await messagesOf(ada.page)).length;
      await more.click();
      await until(ada.page, `page ${pages} of the history`, (n) =>
        document.querySelectorAll("[data-testid=message]").length > n, before);
    }
    const seqs = (await messagesOf(ada.page)).map((m) => m.seq);
    const expected = Array.from({ length: total }, (_, i) => i + 1);
    check(JSON.stringify(seqs) === JSON.stringify(expected),
      `after paging Ada holds seqs ${seqs[0]}…${seqs.at(-1)} (${seqs.length}), not 1…${total}`);
    await shot(ada.page, "history");
  });

  await step("Bob signs out", async () => {
    await bob.page.getByTestId("logout").click();
    await bob.page.getByTestId("auth-view").waitFor();
    check(await bob.page.evaluate(() => sessionStorage.length === 0), "the session stays in sessionStorage");
  });

  await step("no errors in the pages", async () => {
    check(pageErrors.length === 0, pageErrors.join("; "));
  });
  console.log(`all steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${current}: ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
