// dnma.js — the DNMA browser tag: the eight DNMA properties (TAGGING.md) sent
// over the Matomo tracking protocol (TRACKING.md). No dependency, never throws.

const SERVICES = ('accueil,actualites,cahier_textes,cahier_liaison,courrier_electronique,' +
  'messagerie_instantanee,visioconference,stockage_partage,production_collaborative,' +
  'documentation_cdi,parcours_pedagogique,reservation_salles_materiels,service_collectivite,' +
  'services_vie_scolaire,gestion_temps,absences,gestion_competences,notes,manuel_numerique,' +
  'ressource_multimedia,ressource_orientation,ressource_production,' +
  'ressource_accompagnement_entrainement,ressource_reference_dictionnaire,ressource_documentaire').split(',');
const PROFILS = 'ELEVE,ENSEIGNANT,PARENT,ADMIN_VIE_SCOL_TECH,PERSONNEL_COLLECTIVITE,AUTRE'.split(',');
const TYPES = ['NATIF', 'TIERS'];
// Property names in the order of their default custom-dimension slots 1-8.
const PROPS = ['uai', 'service', 'type', 'outil', 'profil', 'projet', 'exploitant', 'plateforme'];
const LETTERS = 'ABCDEFGHJKLMNPRSTUVWXYZ';

const ID_COOKIE = '_dnma_id';
const OPTOUT = '_dnma_optout';
// 13 months of 30 days: the CNIL ceiling for an audience-measurement cookie.
const MAX_AGE = 33696000;
// Without input for this long the page is not "active": heartbeats stop, so an
// abandoned tab does not stretch the visit.
const IDLE = 3e5;
const FILES = /\.(pdf|docx?|xlsx?|pptx?|od[tspg]|csv|txt|rtf|zip|rar|7z|gz|tgz|tar|bz2|mp[34]|m4a|ogg|wav|avi|mov|mkv|webm|png|jpe?g|gif|svg|epub|exe|msi|dmg|apk|iso|ggb|sb3)$/i;
const ALT_CLASS = /\b(matomo|piwik|dnma)_(ignore|download|link)\b/;

const W = typeof window != 'undefined' ? window : {};

let endpoint, siteId, userId, debug, respectDnt, cookieDomain, customUrl, customTitle, customRef;
let cookies = 1;
let linkTracking = 0;
let consentMissing = 0;
let hb = 0;
let delay = 500;
let dims = {};
let page = {};
let queue = [];
let timer, beat, visitorId, booted, hooked;
let lastHit = 0;
let lastActivity = 0;
let toolAt = 0;

const now = () => Date.now();
const doc = () => W.document || {};
const loc = () => W.location || {};
const warn = (...a) => debug && W.console && console.warn('[dnma]', ...a);
const safe = (f) => function () {
  try {
    return f.apply(this, arguments);
  } catch (e) {
    warn(e);
  }
};
const on = (target, type, f, opt) => target && target.addEventListener && target.addEventListener(type, safe(f), opt);
const rnd = (n, base = 36) => {
  let s = '';
  while (s.length < n) s += Math.floor(Math.random() * base).toString(base);
  return s;
};

// ---- storage: first-party cookie and localStorage -------------------------

function getCookie(name) {
  try {
    return (String(doc().cookie).match('(?:^|;) ?' + name + '=([^;]*)') || [])[1];
  } catch (e) {}
}

function setCookie(name, value, maxAge) {
  doc().cookie = name + '=' + value + ';path=/;max-age=' + maxAge + ';SameSite=Lax' +
    (cookieDomain ? ';domain=' + cookieDomain : '') + (loc().protocol == 'https:' ? ';Secure' : '');
}

function storage(f) {
  try {
    return f(W.localStorage);
  } catch (e) {}
}

// The visitor id is created once with a fixed 13-month life and never rewritten,
// so the cookie is not extended by later visits.
function visitor() {
  if (!cookies || consentMissing) return;
  if (!visitorId) {
    visitorId = getCookie(ID_COOKIE);
    if (!/^[0-9a-f]{16}$/.test(visitorId)) {
      visitorId = rnd(16, 16);
      try {
        setCookie(ID_COOKIE, visitorId, MAX_AGE);
      } catch (e) {}
    }
  }
  return visitorId;
}

function optedOut() {
  return getCookie(OPTOUT) == '1' || storage((s) => s.getItem(OPTOUT)) == '1';
}

function optOutImpl() {
  setCookie(OPTOUT, 1, MAX_AGE);
  storage((s) => s.setItem(OPTOUT, '1'));
  setCookie(ID_COOKIE, '', 0);
  visitorId = 0;
  queue = [];
}

function optInImpl() {
  setCookie(OPTOUT, '', 0);
  storage((s) => s.removeItem(OPTOUT));
}

// ---- properties: normalisation and client-side checks ---------------------

function checkUai(uai) {
  if (!/^\d{7}[A-Z]$/.test(uai)) return warn('UAI "' + uai + '" malformed: 7 digits then a check letter expected');
  const letter = LETTERS[uai.slice(0, 7) % 23];
  if (letter != uai[7]) warn('UAI "' + uai + '": wrong check letter, ' + letter + ' expected');
}

function check(slot, value, name) {
  if (slot == 1) checkUai(value);
  const vocabulary = slot == 2 ? SERVICES.map((s) => s.toUpperCase()) : slot == 3 ? TYPES : slot == 5 ? PROFILS : 0;
  if (vocabulary && vocabulary.indexOf(value) < 0) warn('unknown ' + name + ' "' + value + '"');
}

// Slots 1-5 (UAI, SERVICE, TYPE, OUTIL, PROFIL) are upper-cased; the others are only trimmed.
function setDim(slot, value) {
  slot = +slot;
  value = value == null ? '' : String(value).trim();
  if (slot < 6) value = value.toUpperCase();
  if (!value) return delete dims[slot];
  dims[slot] = value;
  if (debug) check(slot, value, (PROPS[slot - 1] || '').toUpperCase());
}

function setProps(o) {
  PROPS.forEach((p, i) => p in o && setDim(i + 1, o[p]));
}

// ---- hits, queue and transport ----------------------------------------------

const dntOn = () => {
  const n = W.navigator || {};
  return /^(1|yes)$/.test(n.doNotTrack || W.doNotTrack || n.msDoNotTrack);
};

function hit(params) {
  if (!endpoint || !siteId) return warn('not initialised: call dnma.init({endpoint, siteId}) first');
  if ((respectDnt && dntOn()) || optedOut()) return;
  const d = new Date();
  const s = W.screen || {};
  const p = {
    idsite: siteId, rec: 1, apiv: 1, r: rnd(6),
    url: page.url || customUrl || loc().href, urlref: page.urlref,
    _id: visitor(), uid: userId, pv_id: page.id,
    h: d.getHours(), m: d.getMinutes(), s: d.getSeconds(),
    res: s.width && s.width + 'x' + s.height, send_image: 0,
  };
  for (const slot in dims) p['dimension' + slot] = dims[slot];
  Object.assign(p, params);
  queue.push(Object.keys(p).filter((k) => p[k] != null && p[k] !== '')
    .map((k) => k + '=' + encodeURIComponent(p[k])).join('&'));
  lastHit = now();
  timer = timer || setTimeout(flushImpl, delay);
}

// One hit goes as a form-encoded POST; several go as ONE bulk request, the JSON
// body typed as a form like matomo.js does, which keeps the request CORS-simple
// (no preflight, allowed for sendBeacon).
function flushImpl() {
  clearTimeout(timer);
  timer = 0;
  if (!queue.length || consentMissing) return;
  const items = queue;
  queue = [];
  const body = items.length > 1 ? JSON.stringify({ requests: items.map((q) => '?' + q) }) : items[0];
  const blob = W.Blob ? new Blob([body], { type: 'application/x-www-form-urlencoded; charset=UTF-8' }) : body;
  const images = () => items.forEach((q) => {
    new Image(1, 1).src = endpoint + (endpoint.indexOf('?') < 0 ? '?' : '&') + q;
  });
  const n = W.navigator || {};
  try {
    if (n.sendBeacon && n.sendBeacon(endpoint, blob)) return;
  } catch (e) {}
  if (W.fetch) {
    fetch(endpoint, { method: 'POST', body: blob, keepalive: true, mode: 'no-cors', credentials: 'omit' }).catch(safe(images));
  } else images();
}

// ---- page views, heartbeat, single-page apps -------------------------------

function pageView(o = {}) {
  setProps(o);
  const url = o.url || customUrl || loc().href;
  page = {
    url, id: rnd(6), href: loc().href,
    urlref: o.urlref || customRef || page.url || doc().referrer,
  };
  lastActivity = now();
  hit({ action_name: o.title || customTitle || doc().title });
}

function tick() {
  const t = now();
  if (page.id && doc().visibilityState != 'hidden' && t - lastActivity < IDLE && t - lastHit > hb * 900) hit({ ping: 1 });
}

function heartbeat(seconds) {
  hb = +seconds || 0;
  clearInterval(beat);
  if (hb > 0) beat = setInterval(safe(tick), hb * 1000);
}

function route() {
  if (page.id && loc().href != page.href) pageView({ url: loc().href, urlref: page.url });
}

function hookHistory() {
  const h = W.history;
  if (hooked || !h) return;
  hooked = 1;
  ['pushState', 'replaceState'].forEach((m) => {
    const original = h[m];
    if (typeof original == 'function') {
      h[m] = function () {
        const result = original.apply(this, arguments);
        safe(route)();
        return result;
      };
    }
  });
  on(W, 'popstate', route);
}

// ---- links ------------------------------------------------------------------

function onClick(e) {
  const t = e.target;
  const a = t && t.closest && t.closest('a[href],area[href]');
  if (!a || !/^https?:/i.test(a.href)) return;
  const cls = String(a.className).match(ALT_CLASS) || [];
  const outil = a.getAttribute('data-dnma-outil');
  if (outil) return toolImpl(outil, { service: a.getAttribute('data-dnma-service') || undefined });
  if (!linkTracking || cls[2] == 'ignore') return;
  if (cls[2] == 'download' || a.hasAttribute('download') || FILES.test(a.pathname)) download(a.href);
  else if ((cls[2] == 'link' || a.hostname != loc().hostname) && now() - toolAt > 1e3) outlink(a.href);
}

function boot() {
  if (booted) return;
  booted = 1;
  const d = doc();
  on(d, 'visibilitychange', () => d.visibilityState == 'hidden' && flushImpl());
  on(W, 'pagehide', flushImpl);
  on(d, 'click', onClick);
  on(d, 'auxclick', onClick);
  ['keydown', 'pointerdown', 'mousemove', 'scroll', 'touchstart'].forEach((type) =>
    on(W, type, () => (lastActivity = now()), { capture: true, passive: true }));
}

// ---- public API ---------------------------------------------------------------

// The opening of a third-party tool is a page view of its own (as an ENT
// connector page is) with TYPE=TIERS and OUTIL; it does not replace the current
// page, whose pv_id and properties the following hits keep.
function toolImpl(outil, o) {
  o = o || {};
  outil = String(outil || '').trim().toUpperCase();
  if (!outil) return warn('tool(): OUTIL missing');
  toolAt = now();
  const service = o.service == null ? dims[2] : String(o.service).trim().toUpperCase();
  if (debug && service) check(2, service, 'SERVICE');
  const params = { action_name: o.title || outil, pv_id: rnd(6), dimension2: service, dimension3: 'TIERS', dimension4: outil };
  if (o.url) params.url = o.url;
  hit(params);
}

export const init = safe((o = {}) => {
  debug = !!o.debug;
  endpoint = o.endpoint || '/matomo.php';
  siteId = o.siteId;
  userId = o.userId;
  respectDnt = !!o.respectDoNotTrack;
  cookieDomain = o.cookieDomain;
  cookies = o.cookies !== false;
  linkTracking = o.linkTracking !== false;
  if (o.delay >= 0) delay = o.delay;
  if (!siteId) warn('init(): siteId missing');
  dims = {};
  setProps(o);
  heartbeat(o.heartbeat == null ? 15 : o.heartbeat);
  if (o.spa !== false) hookHistory();
  boot();
});

export const set = safe(setProps);

// page({service, type, outil, title, url}): SERVICE/TYPE/OUTIL belong to the page,
// so a page that names any of them resets the others (TYPE defaults to NATIF,
// or TIERS when an OUTIL is given).
export const pageFn = safe((o = {}) => {
  if ('service' in o || 'type' in o || 'outil' in o) {
    setDim(3, o.type || (o.outil ? 'TIERS' : 'NATIF'));
    setDim(4, o.outil);
  }
  if (!dims[3]) setDim(3, 'NATIF');
  pageView(o);
  if (debug) [[1, 'UAI'], [2, 'SERVICE'], [5, 'PROFIL']].forEach(([slot, name]) => dims[slot] || warn(name + ' missing'));
});

export const event = safe((category, action, name, value) => {
  if (!String(category || '').trim() || !String(action || '').trim()) return warn('event(): category and action required');
  hit({ ca: 1, e_c: category, e_a: action, e_n: name, e_v: value });
});

export const download = safe((url) => hit({ ca: 1, download: url }));
export const outlink = safe((url) => hit({ ca: 1, link: url }));
export const tool = safe(toolImpl);
export const flush = safe(flushImpl);
export const optOut = safe(optOutImpl);
export const optIn = safe(optInImpl);
export const getVisitorId = safe(visitor);
export const isOptedOut = safe(optedOut);

// ---- matomo.js compatibility: the _paq queue and window.Matomo --------------

const tracker = {
  setTrackerUrl: (u) => (endpoint = u),
  setSiteId: (s) => (siteId = s),
  setUserId: (u) => (userId = u),
  resetUserId: () => (userId = undefined),
  setCustomDimension: setDim,
  deleteCustomDimension: (slot) => setDim(slot),
  getCustomDimension: (slot) => dims[slot],
  setDocumentTitle: (t) => (customTitle = t),
  setCustomUrl: (u) => (customUrl = u),
  setReferrerUrl: (u) => (customRef = u),
  trackPageView: (title) => pageView({ title }),
  trackEvent: event,
  trackLink: (u, type) => (type == 'download' ? download(u) : outlink(u)),
  trackSiteSearch: (keyword, category, count) => hit({ search: keyword, search_cat: category, search_count: count }),
  enableLinkTracking: () => (linkTracking = 1),
  enableHeartBeatTimer: (s) => heartbeat(s || 15),
  disableHeartBeatTimer: () => heartbeat(0),
  setDoNotTrack: (b) => (respectDnt = b),
  disableCookies: () => (cookies = 0),
  setCookieDomain: (d) => (cookieDomain = d),
  requireConsent: () => (consentMissing = 1),
  setConsentGiven: () => { consentMissing = 0; flushImpl(); },
  optUserOut: optOutImpl,
  forgetUserOptOut: optInImpl,
  isUserOptedOut: optedOut,
  getVisitorId: visitor,
  getUserId: () => userId,
  setDebug: (b) => (debug = b),
};
tracker.rememberConsentGiven = tracker.setConsentGiven;

// matomo.js applies these first whatever their place in the queue; its default
// snippet pushes trackPageView before setTrackerUrl and setSiteId.
const FIRST = ['setTrackerUrl', 'setSiteId', 'setUserId', 'disableCookies', 'setCookieDomain', 'requireConsent', 'setDoNotTrack', 'enableLinkTracking'];

function run(command) {
  try {
    if (typeof command == 'function') return command.call(tracker);
    const f = typeof command[0] == 'function' ? command[0] : tracker[command[0]];
    if (f) f.apply(tracker, command.slice(1));
    else warn('_paq: unsupported ' + command[0]);
  } catch (e) {
    warn(e);
  }
}

// Runs the commands already queued in window._paq, then makes later pushes run
// at once. The same array keeps working, even when a snippet holds it in a local variable.
export const installPaq = safe(() => {
  let q = W._paq;
  if (!q || !q.slice) q = [];
  boot();
  const cmds = q.slice();
  cmds.filter((c) => FIRST.indexOf(c[0]) >= 0).concat(cmds.filter((c) => FIRST.indexOf(c[0]) < 0)).forEach(run);
  q.length = 0;
  q.push = function () {
    [].forEach.call(arguments, run);
    return 0;
  };
  W._paq = q;
  const api = { getTracker: (u, s) => (u && tracker.setTrackerUrl(u), s && tracker.setSiteId(s), tracker), getAsyncTracker: () => tracker };
  W.Matomo = W.Matomo || api;
  W.Piwik = W.Piwik || api;
});

export { pageFn as page };

export default { init, set, page: pageFn, event, download, outlink, tool, flush, optOut, optIn, isOptedOut, getVisitorId };
