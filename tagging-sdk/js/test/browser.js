// A minimal fake browser (window, document, navigator, history, timers, clock)
// in a node:vm context, running the BUILT tag dist/dnma.iife.js. It records what
// the tag sends so tests can assert the exact Matomo parameters.
import vm from 'node:vm';
import { readFileSync } from 'node:fs';

const TAG = readFileSync(new URL('../dist/dnma.iife.js', import.meta.url), 'utf8');

function eventTarget(obj) {
  const listeners = {};
  obj.addEventListener = (type, f) => (listeners[type] = listeners[type] || []).push(f);
  obj.removeEventListener = (type, f) => (listeners[type] = (listeners[type] || []).filter((g) => g !== f));
  obj.dispatch = (type, event = {}) => (listeners[type] || []).forEach((f) => f({ type, ...event }));
  return obj;
}

/**
 * opts: href, referrer, title, cookie (initial "a=b; c=d"), storage (object),
 * doNotTrack, beacon (false: no sendBeacon; 'refuse': returns false), fetch (false: none),
 * before (JS source run before the tag, e.g. a _paq snippet), load (false: do not load the tag).
 */
export function browser(opts = {}) {
  const b = { sent: [], warnings: [], errors: [], cookieWrites: [], time: opts.time ?? Date.UTC(2024, 0, 8, 8, 30, 15) };
  b.url = new URL(opts.href || 'https://ent.example.fr/accueil');

  let timers = [];
  let seq = 0;
  const addTimer = (f, ms, every) => {
    timers.push({ id: ++seq, f, at: b.time + (ms || 0), every });
    return seq;
  };
  const clear = (id) => (timers = timers.filter((t) => t.id !== id));
  b.advance = (ms) => {
    const end = b.time + ms;
    for (;;) {
      timers.sort((x, y) => x.at - y.at);
      const t = timers[0];
      if (!t || t.at > end) break;
      b.time = t.at;
      if (t.every) t.at += t.every;
      else timers.shift();
      t.f();
    }
    b.time = end;
  };
  b.pendingTimers = () => timers.length;

  class FakeDate extends Date {
    constructor(...a) {
      if (a.length) super(...a);
      else super(b.time);
    }
    static now() {
      return b.time;
    }
  }

  const jar = new Map((opts.cookie || '').split('; ').filter(Boolean).map((c) => c.split('=')));
  const document = eventTarget({
    title: opts.title ?? 'Accueil - ENT',
    referrer: opts.referrer ?? '',
    visibilityState: 'visible',
    get cookie() {
      if (opts.cookieThrows) throw new Error('SecurityError');
      return [...jar].map(([k, v]) => k + '=' + v).join('; ');
    },
    set cookie(v) {
      if (opts.cookieThrows) throw new Error('SecurityError');
      b.cookieWrites.push(v);
      const [pair, ...attrs] = v.split(';');
      const i = pair.indexOf('=');
      const maxAge = attrs.find((a) => /^max-age=/i.test(a.trim()));
      if (maxAge && +maxAge.split('=')[1] <= 0) jar.delete(pair.slice(0, i));
      else jar.set(pair.slice(0, i), pair.slice(i + 1));
    },
  });
  b.cookies = jar;
  // enough DOM for the demo pages' script loaders
  b.appended = [];
  document.createElement = (tagName) => ({ tagName });
  document.head = { appendChild: (el) => b.appended.push(el) };
  document.getElementsByTagName = () => [{ parentNode: { insertBefore: (el) => b.appended.push(el) } }];

  const store = new Map(Object.entries(opts.storage || {}));
  const localStorage = {
    getItem: (k) => (opts.storageThrows ? boom() : store.has(k) ? store.get(k) : null),
    setItem: (k, v) => (opts.storageThrows ? boom() : store.set(k, String(v))),
    removeItem: (k) => (opts.storageThrows ? boom() : store.delete(k)),
  };
  const boom = () => {
    throw new Error('SecurityError');
  };
  b.storage = store;

  const navigator = { userAgent: 'fake', doNotTrack: opts.doNotTrack };
  if (opts.beacon !== false) {
    navigator.sendBeacon = (url, body) => {
      if (opts.beacon === 'throw') throw new TypeError('beacon');
      if (opts.beacon === 'refuse') return false;
      b.sent.push({ via: 'beacon', url, body });
      return true;
    };
  }

  const location = {
    get href() { return b.url.href; },
    get hostname() { return b.url.hostname; },
    get protocol() { return b.url.protocol; },
    get origin() { return b.url.origin; },
    get pathname() { return b.url.pathname; },
    get search() { return b.url.search; },
    get hash() { return b.url.hash; },
  };
  const history = {
    pushState(state, title, url) { if (url != null) b.url = new URL(url, b.url); },
    replaceState(state, title, url) { if (url != null) b.url = new URL(url, b.url); },
  };

  class Blob {
    constructor(parts, o = {}) {
      this.text = parts.join('');
      this.type = o.type;
    }
  }
  class Image {
    set src(v) {
      b.sent.push({ via: 'image', url: v });
    }
  }

  const sandbox = eventTarget({
    Date: FakeDate,
    URLSearchParams,
    document, navigator, location, history, localStorage, Blob, Image,
    screen: { width: 1920, height: 1080 },
    console: { warn: (...a) => b.warnings.push(a.map(String).join(' ')), log() {}, error() {} },
    setTimeout: addTimer,
    clearTimeout: clear,
    setInterval: (f, ms) => addTimer(f, ms, ms),
    clearInterval: clear,
  });
  if (opts.fetch !== false) {
    sandbox.fetch = (url, init) => {
      b.sent.push({ via: 'fetch', url, body: init.body, init });
      return Promise.resolve({});
    };
  }
  sandbox.window = sandbox;
  b.window = vm.createContext(sandbox);
  b.document = document;
  b.history = history;
  b.run = (code) => vm.runInContext(code, b.window);
  if (opts.before) b.run(opts.before);
  b.loadTag = () => {
    b.run(TAG);
    b.dnma = sandbox.dnma;
  };
  if (opts.load !== false) b.loadTag();

  // Every recorded hit as {via, endpoint, bulk, contentType, params: {...}}.
  b.hits = () => b.sent.flatMap((s) => {
    if (s.via == 'image') {
      const [endpoint, query] = s.url.split('?');
      return [{ via: s.via, endpoint, params: Object.fromEntries(new URLSearchParams(query)) }];
    }
    const text = typeof s.body == 'string' ? s.body : s.body.text;
    const contentType = s.body.type;
    if (text.startsWith('{')) {
      return JSON.parse(text).requests.map((q) => ({
        via: s.via, endpoint: s.url, bulk: true, contentType, raw: q,
        params: Object.fromEntries(new URLSearchParams(q.slice(1))),
      }));
    }
    return [{ via: s.via, endpoint: s.url, bulk: false, contentType, params: Object.fromEntries(new URLSearchParams(text)) }];
  });
  b.params = () => b.hits().map((h) => h.params);

  b.hide = () => {
    document.visibilityState = 'hidden';
    document.dispatch('visibilitychange');
  };
  b.show = () => {
    document.visibilityState = 'visible';
    document.dispatch('visibilitychange');
  };
  b.link = (href, attrs = {}) => {
    const u = new URL(href, b.url);
    const el = {
      href: u.href, hostname: u.hostname, pathname: u.pathname, className: attrs.class || '',
      getAttribute: (n) => attrs[n] ?? null,
      hasAttribute: (n) => n in attrs,
    };
    el.closest = () => el;
    return el;
  };
  b.click = (el) => document.dispatch('click', { target: el });
  b.activity = () => sandbox.dispatch('keydown');
  return b;
}
