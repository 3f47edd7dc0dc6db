// Debian's Chromium, headless, for the browser tests (never a browser a tool downloads).
// CHROMIUM names another binary. The flags keep it off the network it would otherwise call at
// start (this machine's network is closed) and out of a sandbox root cannot use.
import { chromium } from "playwright-core";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
