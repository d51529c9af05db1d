/// <reference lib="dom" />
// The page at / in headless Chromium (Debian's /usr/bin/chromium, driven by puppeteer-core): type
// a prompt, press Generate, see progress with a preview, then the image in the gallery; drop a
// PNG to read its parameters.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { startServer, type Server } from '../lib/server/serve';
import { tinyCheckpoint } from './tiny';

const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';

describe('the web page (headless Chromium)', function () {
  let server: Server;
  let browser: Browser;
  let page: Page;

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM)`);
    server = await startServer({ weights: await tinyCheckpoint(), port: 0, device: 'cpu' });
    browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    page = await browser.newPage();
    await page.goto(server.url, { waitUntil: 'networkidle0' });
  });

  after(async function () {
    await browser?.close();
    await server?.close(1000);
  });

  it('generates: prompt, Generate, progress with a preview, the image in the gallery with a download link', async function () {
    await page.waitForFunction(() => (document.getElementById('sampler') as HTMLSelectElement).options.length > 5 && (document.getElementById('scheduler') as HTMLSelectElement).options.length > 1);
    await page.type('#prompt', 'a lighthouse at dusk');
    for (const [id, value] of [['#width', '32'], ['#height', '32'], ['#steps', '150'], ['#seed', '21'], ['#scheduler', 'karras']]) {
      await page.$eval(id!, (el, v) => ((el as HTMLInputElement).value = v as string), value);
    }
    await page.click('#generate');
    await page.waitForFunction(() => !(document.getElementById('preview') as HTMLImageElement).hidden && (document.getElementById('preview') as HTMLImageElement).src.startsWith('data:image/png'), { timeout: 120_000 });
    const progressText = await page.$eval('#progress-text', (el) => el.textContent ?? '');
    assert.match(progressText, /step \d+\/150/);
    await page.waitForSelector('#gallery img.result', { timeout: 300_000 });
    const { src, download } = await page.$eval('#gallery figure', (fig) => ({ src: fig.querySelector('img')!.src, download: fig.querySelector('a')!.download }));
    assert.match(src, /^data:image\/png;base64,/);
    assert.equal(download, 'sdtorch-21.png');
    assert.equal(await page.$eval('#error', (el) => (el as HTMLElement).hidden), true);
    await page.screenshot({ path: `${process.env['SDTORCH_SCREENSHOT_DIR'] ?? '/tmp'}/sdtorch-page.png` });
  });

  it('reads a dropped PNG\'s parameters and fills the form with them', async function () {
    const b64 = await page.$eval('#gallery img.result', (img) => (img as HTMLImageElement).src.split(',')[1]!);
    await page.evaluate(async (data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'x.png', { type: 'image/png' }));
      document.getElementById('pnginfo-drop')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, b64);
    await page.waitForFunction(() => (document.getElementById('pnginfo')!.textContent ?? '').includes('Seed: 21'));
    await page.$eval('#prompt', (el) => ((el as HTMLTextAreaElement).value = ''));
    await page.click('#use-pnginfo');
    assert.equal(await page.$eval('#prompt', (el) => (el as HTMLTextAreaElement).value), 'a lighthouse at dusk');
    assert.equal(await page.$eval('#steps', (el) => (el as HTMLInputElement).value), '150');
    // "Sampler: Euler a Karras" back into the two selects, filled from /samplers and /schedulers
    assert.equal(await page.$eval('#sampler', (el) => (el as HTMLSelectElement).value), 'Euler a');
    assert.equal(await page.$eval('#scheduler', (el) => (el as HTMLSelectElement).value), 'karras');
    assert.deepEqual(await page.$eval('#scheduler', (el) => Array.from((el as HTMLSelectElement).options, (o) => o.text)), ['Automatic', 'Karras', 'Exponential', 'SGM Uniform', 'Beta']);
  });
});
