// Helpers for one-shot browser scripts run by runBrowser (e2e/browser_test.go): connect to the Chromium the Go test
// started, and hand the Go test one JSON result (the last line of stdout).
import puppeteer from 'puppeteer-core';

// connect returns the browser the Go test started (BROWSER_WS) and a fresh context in it; close the context when done.
export async function connect() {
  const browser = await puppeteer.connect({ browserWSEndpoint: process.env.BROWSER_WS, protocolTimeout: 30000 });
  const context = await browser.createBrowserContext();
  return { browser, context };
}

// result prints v as the script's result and ends the script (exit code 0).
export function result(v) {
  process.stdout.write('\n' + JSON.stringify(v) + '\n');
  process.exit(0);
}

// fail prints the error as the script's result ({"error": …}) and ends the script with exit code 1.
export function fail(e) {
  process.stdout.write('\n' + JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
}
