/**
 * The web chat page in real headless Chromium, against the real server: over
 * the embedded gRPC-Web endpoint (what `npm start` serves) and, when Envoy is
 * installed, through real Envoy started from gateway/envoy.yaml.
 *
 * Screenshots of every state go to test-results/browser/.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { SimulatedLlm } from '../src/llm/simulated';
import { LlmError, type LlmProvider } from '../src/llm/port';
import { synthesizeVoice } from './voice-signal';
import { describeWhen } from './engines';
import { connected, metric, startTestApp, type ChatStream, type TestApp } from './harness';
import { StandInHeap } from './stand-in-heap';
import { CHROMIUM, CHROMIUM_ARGS, ENVOY_MISSING, envoyBinary, freePort, startEnvoy, startTcpProxy, type RunningEnvoy, type TcpProxy } from './web-helpers';

const SCREENSHOTS = resolve(__dirname, '..', 'test-results', 'browser');

jest.setTimeout(90_000);

// The page's globals, for the functions run inside it (this file compiles without the DOM lib).
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;
declare const window: any;
declare const MutationObserver: any;
declare const getComputedStyle: any;

/** Replies take a fixed, short time (text 300 ms in 12 deltas, audio 900 ms); a text with "#fail" fails (a model overloaded: it may pass). */
const llm = (): LlmProvider => {
  const simulated = new SimulatedLlm({ delayScale: 0.6, random: () => 0.5 });
  return {
    name: 'simulated-for-browser-tests',
    usesHistory: false,
    generate: (req, opts) => (req.text?.includes('#fail') ? Promise.reject(new LlmError('the model is overloaded', 'UNAVAILABLE', true)) : simulated.generate(req, opts)),
  };
};

async function startWebApp(env: Record<string, string>, web: { devTokens?: boolean; apiUrl?: string } = {}): Promise<TestApp> {
  return startTestApp(
    {
      CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '120000',
      CHATFLOW_RETRY_AFTER_MS: '3000',
      CHATFLOW_DEV_TOKENS: web.devTokens ? 'true' : 'false',
      ...(web.apiUrl ? { CHATFLOW_WEB_API_URL: web.apiUrl } : {}),
      ...env,
    },
    { llm: llm() },
  );
}

// Functions, not strings: the page's CSP forbids eval, and Playwright evaluates strings with it.
const stateOf = (page: Page) => page.evaluate((): string => document.body.dataset.state);
const focusedId = (page: Page) => page.evaluate((): string => document.activeElement?.id ?? '');
const scrollWidth = (page: Page) => page.evaluate((): number => document.documentElement.scrollWidth);

async function waitConnected(page: Page): Promise<void> {
  await page.waitForFunction(() => document.body.dataset.state === 'connected', null, { timeout: 15_000 }).catch(async (e: Error) => {
    throw new Error(`page not connected (state ${await stateOf(page)}, notice "${await page.locator('#notice').innerText()}"): ${e.message}`);
  });
}

/** Records every text the last reply bubble shows, to prove it grew delta by delta. */
async function watchReplies(page: Page): Promise<void> {
  await page.evaluate(() => {
    window.__replyTexts = [];
    new MutationObserver(() => {
      const bots = document.querySelectorAll('#messages .msg.bot .text');
      const last = bots[bots.length - 1];
      if (last) window.__replyTexts.push(last.textContent);
    }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
  });
}

/** The context a flow runs in: the app, where the page is, what the page talks to. */
interface Target {
  name: string;
  t: TestApp;
  /** The page URL (with ?api= when the RPCs go elsewhere). */
  url: string;
  apiLabel: RegExp;
}

/**
 * The flow of the issue, run against each target: connect, text with a
 * streamed reply, an audio file with a playable voice reply, a second tab
 * refused, the 51st client told the server is full and let in when a slot frees.
 */
function chatFlow(target: () => Target, browser: () => Browser): void {
  let ctx: BrowserContext;
  let page: Page;
  const shot = (p: Page, name: string) => p.screenshot({ path: join(SCREENSHOTS, `${target().name}-${name}.png`), fullPage: true });
  const errors: string[] = [];

  beforeAll(async () => {
    ctx = await browser().newContext({ timezoneId: 'America/New_York', viewport: { width: 1100, height: 800 } });
    page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(target().url);
  });
  afterAll(async () => ctx?.close());

  it('connects with the browser\'s own time zone, then streams the reply to a text', async () => {
    expect(await page.inputValue('#time-zone')).toBe('America/New_York');
    await expect(page.locator('#api-info').innerText()).resolves.toMatch(target().apiLabel);
    await shot(page, '01-start');
    await page.fill('#client-id', 'web-alice');
    await page.click('#connect-button');
    await waitConnected(page);
    expect(await page.locator('#status').innerText()).toMatch(/Connected as web-alice · America\/New_York \(local time \d\d:\d\d\)/);
    await shot(page, '02-connected');

    await watchReplies(page);
    await page.fill('#message-input', 'What should I do first?');
    await page.press('#message-input', 'Enter');
    await expect(page.inputValue('#message-input')).resolves.toBe('');
    const reply = page.locator('#messages .msg.bot[aria-busy="false"]').first();
    await reply.waitFor({ timeout: 15_000 });
    const text = await reply.locator('.text').innerText();
    expect(text).toMatch(/You asked: "What should I do first\?"/);
    expect(text).toMatch(/America\/New_York/);
    // Streamed: the bubble showed at least one partial text before the whole reply.
    const seen = await page.evaluate((): string[] => window.__replyTexts);
    const partial = seen.filter((s) => s.length > 0 && s.length < text.length && text.startsWith(s));
    expect(partial.length).toBeGreaterThan(0);
    await expect(page.locator('#messages .msg.mine .state').first().innerText()).resolves.toMatch(/Sent · #\d+ · Answered/);
    await shot(page, '03-text-reply');
  });

  it('keeps a text over the limit in the box and says by how much, sending nothing (the server would refuse it)', async () => {
    const before = await page.locator('#messages .msg.mine').count();
    const long = '😀'.repeat(16_001); // characters as a person counts them: 16,001 emoji, 32,002 UTF-16 units
    await page.fill('#message-input', long);
    await page.press('#message-input', 'Enter');
    const notice = page.locator('#notice');
    await notice.waitFor({ state: 'visible', timeout: 5_000 });
    await expect(notice.innerText()).resolves.toMatch(/Your message is 16,001 characters; the limit is 16,000\. Shorten it, or send it in parts\./);
    expect(await page.inputValue('#message-input')).toBe(long);
    expect(await page.locator('#messages .msg.mine').count()).toBe(before);
    // Shortened to the limit, it goes, and the notice goes with it.
    await page.fill('#message-input', '😀'.repeat(16_000));
    await page.press('#message-input', 'Enter');
    await expect(page.inputValue('#message-input')).resolves.toBe('');
    await page.locator('#messages .msg.mine').nth(before).waitFor({ timeout: 5_000 });
    await expect(notice.isHidden()).resolves.toBe(true);
  });

  it('sends an audio file; without speech engines the reply says it cannot listen and has no voice (real voice: test/speech.e2e.test.ts)', async () => {
    const wav = synthesizeVoice('hello from a browser test, this is a voice note').bytes;
    await page.setInputFiles('#file-input', { name: 'note.wav', mimeType: 'audio/wav', buffer: wav });
    await expect(page.locator('#messages .msg.mine figure.audio figcaption').last().innerText()).resolves.toMatch(/Voice message: note\.wav/);
    await page.locator('#messages .msg.bot[aria-busy="false"] .text', { hasText: /voice message \(audio\/wav/ }).waitFor({ timeout: 15_000 });
    await expect(page.locator('#messages .msg.bot').last().locator('.text').innerText()).resolves.toMatch(/cannot listen to it: no speech recognizer is set up/);
    await expect(page.locator('#messages .msg.bot figure.voice audio').count()).resolves.toBe(0);
    await shot(page, '04-voice-reply');
  });

  it('tells a second tab with the same client id that it is already connected; the first keeps working', async () => {
    const second = await ctx.newPage();
    await second.goto(target().url);
    // Same browser profile: the client id is remembered.
    expect(await second.inputValue('#client-id')).toBe('web-alice');
    await second.click('#connect-button');
    const notice = second.locator('#notice');
    await notice.waitFor({ state: 'visible', timeout: 10_000 });
    await expect(notice.innerText()).resolves.toMatch(/Already connected in another tab or window as web-alice/);
    expect(await notice.getAttribute('role')).toBe('alert');
    await shot(second, '05-already-connected');
    await second.close();

    await page.fill('#message-input', 'still here?');
    await page.press('#message-input', 'Enter');
    await page.locator('#messages .msg.bot[aria-busy="false"]').nth(2).waitFor({ timeout: 15_000 });
  });

  it('tells the 51st client the server is full, retries after retry-after-ms, and gets in when a slot frees', async () => {
    const t = target().t;
    const open = await metric(t, 'chatflow_clients_connected');
    const holders: ChatStream[] = [];
    try {
      // Fill every slot left (50 by default) with native clients.
      const n = t.app.config.maxClients - open;
      for (let i = 0; i < n; i += 10) holders.push(...(await Promise.all(Array.from({ length: Math.min(10, n - i) }, (_, j) => connected(t, `holder-${i + j}`)))));
      expect(await metric(t, 'chatflow_clients_connected')).toBe(t.app.config.maxClients);

      // Another person's browser: a tab of this context would resume web-alice's remembered session instead.
      const lateCtx = await browser().newContext({ timezoneId: 'America/New_York', viewport: { width: 1100, height: 800 } });
      const late = await lateCtx.newPage();
      await late.goto(target().url);
      await late.fill('#client-id', 'web-late');
      await late.click('#connect-button');
      const notice = late.locator('#notice');
      await notice.waitFor({ state: 'visible', timeout: 10_000 });
      // "retrying in 3 s": the server's retry-after-ms (3000) read from the trailers.
      await expect(notice.innerText()).resolves.toMatch(/Server full — retrying in 3 s/);
      await shot(late, '06-server-full');
      holders.pop()!.cancel();
      await waitConnected(late);
      await expect(late.locator('#notice').isHidden()).resolves.toBe(true);
      await shot(late, '07-in-after-retry');
      await lateCtx.close();
    } finally {
      for (const h of holders) h.cancel();
    }
    expect(errors).toEqual([]);
  });
}

const hasChromium = existsSync(CHROMIUM);

describeWhen(hasChromium, 'web chat page in headless Chromium', `needs Chromium at ${CHROMIUM} (deploy/install-chromium.sh, or apt-get install chromium)`, () => {
  let browser: Browser;
  beforeAll(async () => {
    rmSync(SCREENSHOTS, { recursive: true, force: true });
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  afterAll(async () => browser?.close());

  describe('over the embedded gRPC-Web endpoint (npm start)', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startWebApp({}, { devTokens: true });
    });
    afterAll(async () => t?.close());

    chatFlow(() => ({ name: 'embedded', t, url: `${t.app.httpUrl}/`, apiLabel: /this server \(embedded gRPC-Web\)/ }), () => browser);

    describe('the rest of the page', () => {
      let ctx: BrowserContext;
      const errors: string[] = [];
      const open = async (options: Parameters<Browser['newContext']>[0] = {}) => {
        ctx = await browser.newContext({ timezoneId: 'Europe/Paris', ...options });
        const page = await ctx.newPage();
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(`${t.app.httpUrl}/`);
        return page;
      };
      afterEach(async () => ctx?.close());
      afterAll(() => expect(errors).toEqual([]));

      it('works with the keyboard alone: Tab to each field, Enter connects, Enter sends', async () => {
        const page = await open();
        const token = await t.app.auth.mint('kbd-user');
        for (let i = 0; i < 6 && (await focusedId(page)) !== 'client-id'; i++) await page.keyboard.press('Tab');
        expect(await focusedId(page)).toBe('client-id');
        await page.keyboard.type('kbd-user');
        await page.keyboard.press('Tab');
        expect(await focusedId(page)).toBe('time-zone');
        await page.keyboard.press('Tab');
        expect(await focusedId(page)).toBe('token');
        await page.keyboard.type(token); // a pasted token (minted as `npm run client -- token kbd-user` would)
        await page.keyboard.press('Enter');
        await waitConnected(page);
        for (let i = 0; i < 8 && (await focusedId(page)) !== 'message-input'; i++) await page.keyboard.press('Tab');
        expect(await focusedId(page)).toBe('message-input');
        await page.keyboard.type('typed with the keyboard only');
        await page.keyboard.press('Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"]').waitFor({ timeout: 15_000 });
        await expect(page.locator('#messages .msg.bot .text').innerText()).resolves.toMatch(/typed with the keyboard only/);
        // The focus ring is visible where the keyboard is.
        const outline = await page.locator('#message-input').evaluate((e): string => getComputedStyle(e).outlineStyle);
        expect(outline).toBe('solid');
        await page.screenshot({ path: join(SCREENSHOTS, 'keyboard-only.png'), fullPage: true });
      });

      it('is readable on a 375 px wide phone, history panel included', async () => {
        const page = await open({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
        await page.fill('#client-id', 'phone-user');
        await page.click('#connect-button');
        await waitConnected(page);
        await page.fill('#message-input', 'A longer question, to see how the reply wraps on a narrow screen?');
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"]').waitFor({ timeout: 15_000 });
        expect(await scrollWidth(page)).toBeLessThanOrEqual(375);
        await page.screenshot({ path: join(SCREENSHOTS, 'phone-375.png'), fullPage: true });
        await page.click('#history-toggle');
        await page.locator('#conversations button').first().waitFor({ timeout: 10_000 });
        expect(await scrollWidth(page)).toBeLessThanOrEqual(375);
        // The panel covers the viewport (a full-page shot would show the page below it).
        await page.screenshot({ path: join(SCREENSHOTS, 'phone-375-history.png') });
      });

      it('comes back to the same conversation after a reload: its messages shown, resumed with x-resume-after', async () => {
        const page = await open();
        const connects: Record<string, string>[] = [];
        page.on('request', (r) => {
          if (r.url().endsWith('/chatflow.v1.ChatService/Connect')) connects.push(r.headers());
        });
        await page.fill('#client-id', 'reloader');
        await page.click('#connect-button');
        await waitConnected(page);
        const conversation = /conversation (\S+)/.exec((await page.getAttribute('#status', 'title')) ?? '')![1]!;
        // Disconnect and Connect again before any message: the same conversation, not a new empty one.
        await page.click('#connect-button');
        await page.waitForFunction(() => document.body.dataset.state === 'idle');
        await page.click('#connect-button');
        await waitConnected(page);
        expect(await page.getAttribute('#status', 'title')).toContain(conversation);
        for (const [i, text] of ['first, before the reload', 'second, before the reload'].entries()) {
          await page.fill('#message-input', text);
          await page.press('#message-input', 'Enter');
          await page.locator('#messages .msg.bot[aria-busy="false"]').nth(i).waitFor({ timeout: 15_000 });
        }

        await page.reload();
        await waitConnected(page);
        expect(await page.getAttribute('#status', 'title')).toContain(conversation);
        await expect(page.locator('#messages .msg.mine').count()).resolves.toBe(2);
        await expect(page.locator('#messages .msg.bot').count()).resolves.toBe(2);
        await expect(page.locator('#messages').innerText()).resolves.toMatch(/first, before the reload[\s\S]*You wrote: "first, before the reload"[\s\S]*second, before the reload[\s\S]*You wrote: "second, before the reload"/);
        const last = connects[connects.length - 1]!;
        expect(last['x-conversation-id']).toBe(conversation);
        expect(Number(last['x-resume-after'])).toBeGreaterThanOrEqual(4);

        await page.fill('#message-input', 'third, after the reload');
        await page.press('#message-input', 'Enter');
        // The two replies shown from the history and the new one, complete.
        await page.locator('#messages .msg.bot[data-done="1"]').nth(2).waitFor({ timeout: 15_000 });
        await expect(page.locator('#messages .msg.bot').count()).resolves.toBe(3);
        await page.screenshot({ path: join(SCREENSHOTS, 'reloaded.png') });

        // One conversation in the history (no empty ones from the connects), shown by its first message.
        await page.click('#history-toggle');
        await page.locator('#conversations button').first().waitFor({ timeout: 10_000 });
        await expect(page.locator('#conversations button').count()).resolves.toBe(1);
        await expect(page.locator('#conversations button .preview').innerText()).resolves.toBe('first, before the reload');
        await expect(page.locator('#conversations button .meta').innerText()).resolves.toMatch(/6 messages/);
      });

      it('announces a reply once, when it is complete (not every streamed word)', async () => {
        const page = await open();
        expect(await page.getAttribute('#messages', 'aria-live')).toBeNull();
        await page.fill('#client-id', 'listener');
        await page.click('#connect-button');
        await waitConnected(page);
        await page.evaluate(() => {
          window.__announced = [];
          const region = document.getElementById('announcer');
          new MutationObserver(() => window.__announced.push(region.textContent)).observe(region, { subtree: true, childList: true, characterData: true });
        });
        await page.fill('#message-input', 'say it once');
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"]').waitFor({ timeout: 15_000 });
        await page.waitForTimeout(300);
        const announced = await page.evaluate((): string[] => window.__announced);
        expect(announced).toHaveLength(1);
        expect(announced[0]).toMatch(/^ChatFlow replied: Hello! You wrote: "say it once"/);
        expect(await page.getAttribute('#announcer', 'aria-live')).toBe('polite');
      });

      it.each([
        ['phone', 375, 740],
        ['desktop', 1280, 800],
      ] as const)('keeps the composer in view after 10 messages (%s, %i px): the list scrolls, the page does not', async (name, width, height) => {
        const page = await open({ viewport: { width, height }, ...(width < 500 ? { isMobile: true, hasTouch: true } : {}) });
        await page.fill('#client-id', `ten-${name}`);
        await page.click('#connect-button');
        await waitConnected(page);
        // Connected: the form folds away (who and where are in the status line).
        expect(await page.isHidden('#client-id')).toBe(true);
        for (let i = 1; i <= 10; i++) {
          await page.fill('#message-input', `message number ${i} of ten, a little longer so that it wraps on a phone`);
          await page.press('#message-input', 'Enter');
        }
        await page.locator('#messages .msg.bot[aria-busy="false"]').nth(9).waitFor({ timeout: 30_000 });
        await page.waitForTimeout(300);
        const input = (await page.locator('#message-input').boundingBox())!;
        expect(input.y).toBeGreaterThan(0);
        expect(input.y + input.height).toBeLessThanOrEqual(height);
        const send = (await page.locator('#send-button').boundingBox())!;
        expect(send.y + send.height).toBeLessThanOrEqual(height);
        expect(await page.evaluate((): number => document.documentElement.scrollHeight)).toBeLessThanOrEqual(height);
        expect(await scrollWidth(page)).toBeLessThanOrEqual(width);
        // The list scrolled itself to the last reply.
        const lastReply = (await page.locator('#messages .msg.bot').last().boundingBox())!;
        expect(lastReply.y + lastReply.height).toBeLessThanOrEqual(input.y);
        expect(await page.evaluate((): boolean => {
          const box = document.querySelector('.conversation');
          return box.scrollHeight > box.clientHeight && box.scrollHeight - box.scrollTop - box.clientHeight < 2;
        })).toBe(true);
        await page.screenshot({ path: join(SCREENSHOTS, `ten-messages-${width}.png`) });
      });

      it('follows an image reply to the bottom once the image has loaded', async () => {
        const page = await open({ viewport: { width: 1100, height: 700 } });
        await page.fill('#client-id', 'viewer');
        await page.click('#connect-button');
        await waitConnected(page);
        for (let i = 1; i <= 4; i++) {
          await page.fill('#message-input', `filling the list, message ${i}`);
          await page.press('#message-input', 'Enter');
        }
        await page.locator('#messages .msg.bot[aria-busy="false"]').nth(3).waitFor({ timeout: 15_000 });
        const mp4 = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.alloc(12), Buffer.alloc(2048, 7)]);
        await page.setInputFiles('#file-input', { name: 'clip.mp4', mimeType: 'video/mp4', buffer: mp4 });
        await page.waitForFunction(() => {
          const img = document.querySelector('#messages .msg.bot img.reply-image');
          return img && img.complete && img.naturalHeight > 0;
        }, null, { timeout: 20_000 });
        await page.waitForTimeout(200);
        expect(await page.evaluate((): number => {
          const box = document.querySelector('.conversation');
          return box.scrollHeight - box.scrollTop - box.clientHeight;
        })).toBeLessThan(2);
        await page.screenshot({ path: join(SCREENSHOTS, 'image-reply.png') });
      });

      it('lists past conversations in the history panel and continues one', async () => {
        const page = await open();
        await page.fill('#client-id', 'historian');
        await page.click('#connect-button');
        await waitConnected(page);
        await page.fill('#message-input', 'first conversation, first message');
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"]').waitFor({ timeout: 15_000 });
        const firstConversation = /conversation (\S+)/.exec((await page.getAttribute('#status', 'title')) ?? '')![1];
        // A second conversation.
        await page.click('#history-toggle');
        await page.click('#new-conversation');
        await waitConnected(page);
        expect(/conversation (\S+)/.exec((await page.getAttribute('#status', 'title')) ?? '')![1]).not.toBe(firstConversation);
        await page.fill('#message-input', 'second conversation');
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"]').waitFor({ timeout: 15_000 });

        await page.click('#history-toggle');
        expect(await focusedId(page)).toBe('history-title');
        expect(await page.getAttribute('#history-toggle', 'aria-expanded')).toBe('true');
        // The list opened before the second conversation stays on screen, busy, until the new one comes.
        await page.locator('#conversations[aria-busy="false"]').waitFor({ timeout: 10_000 });
        const item = page.locator(`#conversations button[data-conversation-id="${firstConversation}"]`);
        await expect(page.locator('#conversations button').count()).resolves.toBe(2);
        await item.click();
        await expect(page.locator('#history-detail ol').innerText()).resolves.toMatch(/You: first conversation, first message\s+ChatFlow: Hello!/);
        await page.screenshot({ path: join(SCREENSHOTS, 'history-panel.png'), fullPage: true });
        await page.click('#history-detail .continue');
        await page.waitForFunction((id) => (document.getElementById('status').title || '').includes(id), firstConversation, { timeout: 15_000 });
        await waitConnected(page);
        await expect(page.locator('#messages').innerText()).resolves.toMatch(/first conversation, first message/);
        expect(await page.isHidden('#history')).toBe(true);
      });

      it('shows a message the model failed to answer as sent but not answered', async () => {
        const page = await open();
        await page.fill('#client-id', 'unlucky');
        await page.click('#connect-button');
        await waitConnected(page);
        await page.fill('#message-input', 'this one will #fail');
        await page.press('#message-input', 'Enter');
        const failed = page.locator('#messages .msg.bot.failed');
        await failed.waitFor({ timeout: 15_000 });
        await expect(failed.locator('.text').innerText()).resolves.toBe('No answer: the model could not answer: the model is overloaded; you can send it again in 3 s');
        await expect(page.locator('#messages .msg.mine .state').innerText()).resolves.toMatch(/Sent · #\d+ · Not answered/);
        // Offered once the server's retry_after_ms (CHATFLOW_RETRY_AFTER_MS, 3 s here) has passed, not before.
        const again = failed.getByRole('button', { name: 'Send again' });
        expect(await again.isDisabled()).toBe(true);
        await page.screenshot({ path: join(SCREENSHOTS, 'not-answered.png'), fullPage: true });
        await page.waitForFunction(() => !document.querySelector('#messages .msg.bot.failed .retry').disabled, null, { timeout: 10_000 });
        await again.click();
        // Sent as a new message (the first one's id has its outcome), and failed again: this model always does.
        await page.locator('#messages .msg.bot.failed').nth(1).waitFor({ timeout: 15_000 });
        await expect(page.locator('#messages .msg.mine .text').allInnerTexts()).resolves.toEqual(['this one will #fail', 'this one will #fail']);
        await expect(page.locator('#messages .msg.mine .state').nth(1).innerText()).resolves.toMatch(/Sent · #\d+ · Not answered/);
        expect(await failed.first().locator('.retry').count()).toBe(0);
      });

      it('records a voice message with the microphone and sends it', async () => {
        const page = await open({ permissions: ['microphone'] });
        await page.fill('#client-id', 'recorder');
        await page.click('#connect-button');
        await waitConnected(page);
        await page.click('#record-button');
        await page.locator('#record-button[aria-pressed="true"]').waitFor({ timeout: 5000 }).catch(async () => {
          throw new Error(`not recording: ${await page.locator('#notice').innerText()}`);
        });
        await page.waitForTimeout(800);
        await page.click('#record-button');
        await expect(page.locator('#messages .msg.mine figcaption').first().innerText()).resolves.toMatch(/Voice message: recording\.webm/);
        await page.locator('#messages .msg.bot[aria-busy="false"] .text', { hasText: /audio\/webm/ }).waitFor({ timeout: 15_000 });
        await page.screenshot({ path: join(SCREENSHOTS, 'recorded-voice.png'), fullPage: true });
      });

      /**
       * The page through a relay the test can cut like a network, connected as `clientId` and answered once;
       * `connects` gets the headers of each of its Connect calls.
       */
      const answeredThroughRelay = async (proxy: TcpProxy, clientId: string, text: string) => {
        ctx = await browser.newContext({ timezoneId: 'Europe/Paris' });
        const page = await ctx.newPage();
        page.on('pageerror', (e) => errors.push(e.message));
        const connects: Record<string, string>[] = [];
        page.on('request', (r) => {
          if (r.url().endsWith('/chatflow.v1.ChatService/Connect')) connects.push(r.headers());
        });
        await page.goto(`${proxy.url}/`);
        await page.fill('#client-id', clientId);
        await page.click('#connect-button');
        await waitConnected(page);
        await page.fill('#message-input', text);
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"]').waitFor({ timeout: 15_000 });
        return { page, connects };
      };

      /**
       * The page, having lost its stream without the server knowing, is connected again within 10 s by taking the
       * old stream over (its last Connect names it, one more `replaced` disconnect), never told it is held, and chats.
       */
      const tookItsStreamOver = async (page: Page, connects: Record<string, string>[], replacedBefore: number, text: string) => {
        const since = Date.now();
        await waitConnected(page);
        expect(Date.now() - since).toBeLessThan(10_000);
        await expect(page.locator('#notice').innerText()).resolves.not.toMatch(/still holds|Already connected/);
        const replaces = connects.map((h) => h['x-replaces-session']);
        expect(replaces[0]).toBeUndefined();
        expect(replaces[replaces.length - 1]).toMatch(/^[0-9a-f-]{36}$/);
        expect(await metric(t, 'chatflow_disconnects_total{reason="replaced"}')).toBe(replacedBefore + 1);
        await page.fill('#message-input', text);
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"] .text', { hasText: text }).waitFor({ timeout: 15_000 });
      };

      it('comes back after losing the connection and resumes with x-resume-after: the reply produced meanwhile is shown once', async () => {
        const proxy = await startTcpProxy(t.app.httpPort);
        try {
          const { page, connects } = await answeredThroughRelay(proxy, 'traveller', 'first, while online');
          // An audio message (900 ms to answer); the network goes away before the reply, for 2 s.
          await page.setInputFiles('#file-input', { name: 'tunnel.wav', mimeType: 'audio/wav', buffer: synthesizeVoice('going into a tunnel').bytes });
          await page.locator('#messages .msg.mine .state', { hasText: /Sent · #\d+$/ }).last().waitFor({ timeout: 10_000 });
          proxy.cut(2000);
          await page.waitForFunction(() => document.body.dataset.state !== 'connected', null, { timeout: 10_000 });
          await expect(page.locator('#notice').innerText()).resolves.toMatch(/Connection lost — reconnecting in \d+ s/);
          await page.screenshot({ path: join(SCREENSHOTS, 'connection-lost.png'), fullPage: true });
          await waitConnected(page);
          await page.locator('#messages .msg.bot[aria-busy="false"] .text', { hasText: /voice message \(audio\/wav/ }).waitFor({ timeout: 15_000 });
          await expect(page.locator('#messages .msg.bot').count()).resolves.toBe(2);
          await expect(page.locator('#messages .msg.mine .state').last().innerText()).resolves.toMatch(/Answered/);
          const resumeHeaders = connects.map((h) => h['x-resume-after']);
          expect(resumeHeaders[0]).toBeUndefined();
          expect(resumeHeaders.length).toBeGreaterThan(1);
          expect(Number(resumeHeaders[resumeHeaders.length - 1])).toBeGreaterThan(0);
          await page.screenshot({ path: join(SCREENSHOTS, 'resumed.png'), fullPage: true });
        } finally {
          await proxy.close();
        }
      });

      it('comes back at once from a connection lost without a word to the server (a laptop that slept): it takes its old stream over', async () => {
        const proxy = await startTcpProxy(t.app.httpPort);
        try {
          const { page, connects } = await answeredThroughRelay(proxy, 'sleeper', 'before the lid closed');
          // The server keeps the old stream open (it hears nothing, for up to CHATFLOW_SILENCE_LIMIT_MS, 120 s).
          const replacedBefore = (await metric(t, 'chatflow_disconnects_total{reason="replaced"}')) || 0;
          proxy.cutSilently(1000);
          await page.waitForFunction(() => document.body.dataset.state !== 'connected', null, { timeout: 10_000 });
          await tookItsStreamOver(page, connects, replacedBefore, 'after waking up');
        } finally {
          await proxy.close();
        }
      });

      it('takes its old stream over when reloaded after the connection died without a word (the session is kept in the tab)', async () => {
        const proxy = await startTcpProxy(t.app.httpPort);
        try {
          const { page, connects } = await answeredThroughRelay(proxy, 'reloader-asleep', 'before the lid closed');
          const replacedBefore = (await metric(t, 'chatflow_disconnects_total{reason="replaced"}')) || 0;
          // The server keeps the old stream open; the person reloads the page at once, before it reconnects by itself.
          proxy.cutSilently();
          await page.reload();
          await tookItsStreamOver(page, connects, replacedBefore, 'after the reload');
        } finally {
          await proxy.close();
        }
      });

      it("says in the server's own words that its memory is nearly full, and gets in once it frees", async () => {
        const heap = new StandInHeap();
        const full = await startTestApp({ CHATFLOW_DEV_TOKENS: 'true' }, { llm: llm(), heap });
        try {
          heap.collectTo(90);
          ctx = await browser.newContext({ timezoneId: 'Europe/Paris' });
          const page = await ctx.newPage();
          page.on('pageerror', (e) => errors.push(e.message));
          await page.goto(`${full.app.httpUrl}/`);
          await page.fill('#client-id', 'memory-user');
          await page.click('#connect-button');
          await page.locator('#notice').waitFor({ state: 'visible', timeout: 10_000 });
          await expect(page.locator('#notice').innerText()).resolves.toMatch(/Refused: the server's memory is nearly full \(3\.6 GiB of 4 GiB .*its operator must give it more memory.* — retrying in \d s/i);
          await page.screenshot({ path: join(SCREENSHOTS, 'memory-full.png'), fullPage: true });
          heap.collectTo(50);
          await waitConnected(page);
        } finally {
          await full.close();
        }
      });

      it('asks for a token when the server does not issue development tokens', async () => {
        await t.close();
        t = await startWebApp({}, { devTokens: false });
        const page = await open();
        await expect(page.locator('#token-help').innerText()).resolves.toMatch(/npm run client -- token <client-id>/);
        await page.fill('#client-id', 'no-token');
        await page.click('#connect-button');
        await page.locator('#notice').waitFor({ state: 'visible', timeout: 10_000 });
        await expect(page.locator('#notice').innerText()).resolves.toMatch(/This server needs a token to let no-token in\. In a terminal on the server's machine, run: npm run client -- token no-token — then paste what it prints into the Token field and press Connect\./);
        expect(await focusedId(page)).toBe('token');
        expect(await page.isHidden('#token-optional')).toBe(true);
        await page.screenshot({ path: join(SCREENSHOTS, 'token-needed.png'), fullPage: true });
        await page.fill('#token', await t.app.auth.mint('no-token'));
        await page.click('#connect-button');
        await waitConnected(page);
      });
    });
  });

  describe('from a page of another origin (a web app under development on its own port)', () => {
    let t: TestApp;
    beforeAll(async () => {
      // The page is loaded from http://localhost:P and talks to http://127.0.0.1:P: another origin, the same server,
      // so every call crosses CORS as a separate app's would.
      const port = await freePort();
      t = await startWebApp({ CHATFLOW_HTTP_ADDR: `127.0.0.1:${port}` }, { devTokens: true, apiUrl: `http://127.0.0.1:${port}` });
    });
    afterAll(async () => t?.close());

    it('connects and chats through the embedded endpoint, which grants it CORS (CHATFLOW_WEB_ORIGINS)', async () => {
      const ctx = await browser.newContext({ timezoneId: 'Asia/Tokyo' });
      try {
        const page = await ctx.newPage();
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(`http://localhost:${t.app.httpUrl.split(':').pop()}/`);
        await expect(page.locator('#api-info').innerText()).resolves.toBe(t.app.httpUrl);
        await page.fill('#client-id', 'web-other-origin');
        await page.click('#connect-button');
        await waitConnected(page);
        await page.fill('#message-input', 'Hello from another origin');
        await page.press('#message-input', 'Enter');
        await page.locator('#messages .msg.bot[aria-busy="false"] .text', { hasText: /Hello from another origin/ }).waitFor({ timeout: 15_000 });
        await page.screenshot({ path: join(SCREENSHOTS, 'other-origin.png'), fullPage: true });
        expect(errors).toEqual([]);
      } finally {
        await ctx.close();
      }
    });
  });

  // (Without Chromium the whole suite is skipped already, and reported as such.)
  describeWhen(!hasChromium || envoyBinary() !== undefined, 'through real Envoy (gateway/envoy.yaml)', ENVOY_MISSING, () => {
    let t: TestApp;
    let envoy: RunningEnvoy;
    beforeAll(async () => {
      // Envoy's port must be known before the app starts: the page's CSP only lets it talk to the configured API origin.
      const port = await freePort();
      t = await startWebApp({}, { devTokens: true, apiUrl: `http://127.0.0.1:${port}` });
      envoy = await startEnvoy(envoyBinary()!, [{ host: '127.0.0.1', port: t.app.grpcPort }], port);
    });
    afterAll(async () => {
      await envoy?.stop();
      await t?.close();
    });

    chatFlow(() => ({ name: 'envoy', t, url: `${t.app.httpUrl}/?api=${encodeURIComponent(envoy.url)}`, apiLabel: new RegExp(envoy.url.replace(/\./g, '\\.')) }), () => browser);

    it('went through Envoy (its gateway cluster carried the calls)', async () => {
      const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=^cluster\\.chatflow_gateways\\.upstream_rq_total$`)).text();
      expect(Number(/upstream_rq_total: (\d+)/.exec(stats)?.[1])).toBeGreaterThan(5);
    });
  });
});
