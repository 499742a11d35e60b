// Unit tests of the built tag (dist/dnma.iife.js) in a fake browser: the exact
// Matomo parameters of every kind of hit, the transport, privacy and _paq.
import test from 'node:test';
import assert from 'node:assert/strict';
import { browser } from './browser.js';

const INIT = {
  endpoint: 'https://stats.example.fr/matomo.php', siteId: 3,
  uai: ' 0350122t ', profil: 'eleve', projet: 'ENT_BRETAGNE', exploitant: 'Exploitant SA',
  plateforme: 'Plateforme X', userId: 'u-42',
};
const DIMS = {
  dimension1: '0350122T', dimension5: 'ELEVE', dimension6: 'ENT_BRETAGNE',
  dimension7: 'Exploitant SA', dimension8: 'Plateforme X',
};

function tagged(opts = {}, init = {}) {
  const b = browser(opts);
  b.dnma.init({ ...INIT, ...init });
  return b;
}

// The parameters every hit carries, minus the random ones (checked by shape).
function common(p) {
  assert.match(p.r, /^[0-9a-z]{6}$/);
  assert.match(p._id, /^[0-9a-f]{16}$/);
  const { r, _id, ...rest } = p;
  return rest;
}

function clock(b) {
  const d = new Date(b.time);
  return { h: String(d.getHours()), m: String(d.getMinutes()), s: String(d.getSeconds()) };
}

test('page view carries the exact Matomo parameters and the 8 DNMA properties', () => {
  const b = tagged({ referrer: 'https://portail.example.fr/' });
  b.dnma.page({ service: 'cahier_textes' });
  assert.equal(b.sent.length, 0, 'queued, not yet sent');
  const t = clock(b);
  b.advance(500);
  assert.equal(b.sent.length, 1);
  const [hit] = b.hits();
  assert.equal(hit.via, 'beacon');
  assert.equal(hit.endpoint, 'https://stats.example.fr/matomo.php');
  assert.equal(hit.bulk, false);
  assert.match(hit.contentType, /^application\/x-www-form-urlencoded/);
  const p = hit.params;
  assert.match(p.pv_id, /^[0-9a-z]{6}$/);
  const { pv_id, ...rest } = common(p);
  assert.deepEqual(rest, {
    idsite: '3', rec: '1', apiv: '1',
    url: 'https://ent.example.fr/accueil', urlref: 'https://portail.example.fr/', action_name: 'Accueil - ENT',
    uid: 'u-42', ...t, res: '1920x1080', send_image: '0',
    ...DIMS, dimension2: 'CAHIER_TEXTES', dimension3: 'NATIF',
  });
});

test('page() title/url/outil options; TYPE defaults to TIERS with an OUTIL and resets per page', () => {
  const b = tagged();
  b.dnma.page({ service: 'Ressource_Multimedia', outil: '  Lumni ', title: 'Vidéo', url: 'https://ent.example.fr/r?id=1' });
  b.dnma.page({ service: 'notes' });
  b.advance(500);
  const [a, c] = b.params();
  assert.equal(a.action_name, 'Vidéo');
  assert.equal(a.url, 'https://ent.example.fr/r?id=1');
  assert.deepEqual([a.dimension2, a.dimension3, a.dimension4], ['RESSOURCE_MULTIMEDIA', 'TIERS', 'LUMNI']);
  assert.deepEqual([c.dimension2, c.dimension3, c.dimension4], ['NOTES', 'NATIF', undefined]);
  assert.equal(c.urlref, 'https://ent.example.fr/r?id=1', 'the previous page is the referrer');
  assert.notEqual(a.pv_id, c.pv_id);
});

test('several queued hits go as ONE bulk JSON request when the page is hidden', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.dnma.event('engagement', 'like', 'article', 2);
  b.dnma.download('https://ent.example.fr/doc.pdf');
  b.hide();
  assert.equal(b.sent.length, 1);
  const hits = b.hits();
  assert.equal(hits.length, 3);
  assert.ok(hits.every((h) => h.bulk && h.raw.startsWith('?idsite=3&rec=1&')));
  assert.equal(JSON.parse(b.sent[0].body.text).requests.length, 3);
  b.advance(1000);
  assert.equal(b.sent.length, 1, 'nothing left to send');
});

test('pagehide flushes too', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.dnma.outlink('https://example.org/');
  b.window.dispatch('pagehide');
  assert.equal(b.sent.length, 1);
  assert.equal(b.hits().length, 2);
});

test('event, download, outlink: ca=1, the page pv_id, url and properties', () => {
  const b = tagged();
  b.dnma.page({ service: 'stockage_partage' });
  b.dnma.event('Engagement', 'partage', 'dossier', 4.5);
  b.dnma.download('https://ent.example.fr/f/cours.docx');
  b.dnma.outlink('https://www.lumni.fr/');
  b.advance(500);
  const [pv, ev, dl, ol] = b.params();
  for (const p of [ev, dl, ol]) {
    assert.equal(p.ca, '1');
    assert.equal(p.pv_id, pv.pv_id);
    assert.equal(p.url, pv.url);
    assert.equal(p.dimension2, 'STOCKAGE_PARTAGE');
    assert.equal(p.dimension1, '0350122T');
    assert.equal(p.action_name, undefined);
  }
  assert.equal(pv.ca, undefined);
  assert.deepEqual([ev.e_c, ev.e_a, ev.e_n, ev.e_v], ['Engagement', 'partage', 'dossier', '4.5']);
  assert.equal(dl.download, 'https://ent.example.fr/f/cours.docx');
  assert.equal(ol.link, 'https://www.lumni.fr/');
  assert.equal(dl.link, undefined);
  assert.equal(ol.download, undefined);
});

test('an event without category or action is not sent (the collector would refuse it)', () => {
  const b = tagged({}, { debug: true });
  b.dnma.page({ service: 'accueil' });
  b.dnma.event('', 'x');
  b.dnma.event('c', '  ');
  b.advance(500);
  assert.equal(b.hits().length, 1);
  assert.equal(b.warnings.filter((w) => /category and action/.test(w)).length, 2);
});

test('tool(): the opening of a third-party tool is a page view with TYPE=TIERS, OUTIL, SERVICE', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.dnma.tool(' Pronote ', { service: 'notes' });
  b.dnma.tool('Lalilo');
  b.advance(500);
  b.dnma.tool('Lumni', { service: 'ressource_multimedia', url: 'https://www.lumni.fr/', title: 'Lumni vidéo' });
  b.dnma.event('c', 'a');
  const t = clock(b);
  b.advance(500);
  const [pv, t1, t2, t3, ev] = b.params();
  const { pv_id, ...rest } = common(t1);
  assert.match(pv_id, /^[0-9a-z]{6}$/);
  assert.notEqual(pv_id, pv.pv_id, 'a page view of its own');
  assert.deepEqual(rest, {
    idsite: '3', rec: '1', apiv: '1', url: pv.url, action_name: 'PRONOTE', uid: 'u-42', ...t,
    res: '1920x1080', send_image: '0', ...DIMS, dimension2: 'NOTES', dimension3: 'TIERS', dimension4: 'PRONOTE',
  });
  assert.deepEqual([t2.dimension2, t2.dimension3, t2.dimension4, t2.action_name], ['ACCUEIL', 'TIERS', 'LALILO', 'LALILO']);
  assert.deepEqual([t3.url, t3.action_name, t3.dimension2], ['https://www.lumni.fr/', 'Lumni vidéo', 'RESSOURCE_MULTIMEDIA']);
  assert.deepEqual([ev.pv_id, ev.url, ev.dimension2, ev.dimension3, ev.dimension4], [pv.pv_id, pv.url, 'ACCUEIL', 'NATIF', undefined],
    'the ENT page stays the current page');
});

test('heartbeat: ping=1 every 15 s while visible and active, none when hidden or idle', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.advance(15000 + 500);
  const p = b.params();
  assert.equal(p.length, 2);
  const ping = p[1];
  assert.equal(ping.ping, '1');
  assert.equal(ping.ca, undefined);
  assert.equal(ping.pv_id, p[0].pv_id);
  assert.equal(ping.dimension2, 'ACCUEIL');
  assert.equal(ping.action_name, undefined);

  b.hide();
  const before = b.hits().length;
  b.advance(60000);
  assert.equal(b.hits().length, before, 'no ping while hidden');

  b.show();
  b.activity();
  b.advance(15000 + 500);
  assert.equal(b.hits().length, before + 1);

  b.advance(10 * 60000);
  const pings = b.params().filter((x) => x.ping).length;
  assert.ok(pings <= 1 + 1 + 20, 'stops after 5 min without input');
  const count = b.hits().length;
  b.advance(10 * 60000);
  assert.equal(b.hits().length, count);
});

test('heartbeat option: custom period, 0 disables it', () => {
  const b = tagged({}, { heartbeat: 30 });
  b.dnma.page({ service: 'accueil' });
  b.advance(29000);
  assert.equal(b.params().filter((p) => p.ping).length, 0);
  b.advance(1500);
  assert.equal(b.params().filter((p) => p.ping).length, 1);
  const c = tagged({}, { heartbeat: 0 });
  c.dnma.page({ service: 'accueil' });
  c.advance(120000);
  assert.equal(c.params().filter((p) => p.ping).length, 0);
});

test('no ping when another hit was sent during the period', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.advance(10000);
  b.dnma.event('a', 'b');
  b.advance(5000);
  assert.equal(b.params().filter((p) => p.ping).length, 0);
});

test('SPA: pushState / replaceState / popstate give a new page view with url and urlref', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.history.pushState({}, '', '/notes?eleve=1');
  b.history.replaceState({}, '', '/notes?eleve=1');
  b.document.title = 'Devoirs';
  b.history.replaceState({}, '', '/cahier');
  b.url = new URL('https://ent.example.fr/accueil');
  b.window.dispatch('popstate');
  b.advance(500);
  const p = b.params();
  assert.equal(p.length, 4);
  assert.deepEqual(p.map((x) => x.url), [
    'https://ent.example.fr/accueil', 'https://ent.example.fr/notes?eleve=1',
    'https://ent.example.fr/cahier', 'https://ent.example.fr/accueil',
  ]);
  assert.deepEqual(p.slice(1).map((x) => x.urlref), p.slice(0, 3).map((x) => x.url));
  assert.equal(new Set(p.map((x) => x.pv_id)).size, 4);
  assert.equal(p[2].action_name, 'Devoirs');
  assert.ok(p.every((x) => x.dimension2 === 'ACCUEIL' && x.ca === undefined));
});

test('SPA hooks can be disabled, and never run before the first page view', () => {
  const b = tagged({}, { spa: false });
  b.dnma.page({ service: 'accueil' });
  b.history.pushState({}, '', '/notes');
  const c = tagged();
  c.history.pushState({}, '', '/notes');
  b.advance(500);
  c.advance(500);
  assert.equal(b.hits().length, 1);
  assert.equal(c.hits().length, 0);
});

test('visitor cookie _dnma_id: 16 hex, 13 months, created once and never extended', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.advance(500);
  const id = b.params()[0]._id;
  assert.equal(b.cookies.get('_dnma_id'), id);
  const writes = b.cookieWrites.filter((w) => w.startsWith('_dnma_id='));
  assert.equal(writes.length, 1);
  assert.match(writes[0], /^_dnma_id=[0-9a-f]{16};path=\/;max-age=33696000;SameSite=Lax;Secure$/);
  b.dnma.page({ service: 'notes' });
  b.advance(15000);

  const later = tagged({ cookie: '_dnma_id=' + id });
  later.dnma.page({ service: 'accueil' });
  later.advance(500);
  assert.equal(later.params()[0]._id, id);
  assert.equal(later.cookieWrites.length, 0, 'no rewrite, so no extension');
  assert.equal(b.cookieWrites.length, 1);
});

test('cookieDomain and cookies:false', () => {
  const b = tagged({}, { cookieDomain: '.example.fr' });
  b.dnma.page();
  assert.match(b.cookieWrites[0], /;domain=\.example\.fr/);
  const c = tagged({}, { cookies: false });
  c.dnma.page();
  c.advance(500);
  assert.equal(c.params()[0]._id, undefined);
  assert.equal(c.cookieWrites.length, 0);
});

test('optOut(): nothing sent, visitor cookie removed, remembered in cookie and localStorage; optIn() undoes', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  assert.equal(b.dnma.isOptedOut(), false);
  b.dnma.optOut();
  assert.equal(b.dnma.isOptedOut(), true);
  b.advance(500);
  assert.equal(b.sent.length, 0, 'the queued page view is dropped too');
  assert.equal(b.cookies.get('_dnma_optout'), '1');
  assert.equal(b.cookies.has('_dnma_id'), false);
  assert.equal(b.storage.get('_dnma_optout'), '1');
  b.dnma.page({ service: 'notes' });
  b.dnma.event('a', 'b');
  b.advance(60000);
  b.hide();
  assert.equal(b.sent.length, 0);

  const next = tagged({ cookie: '_dnma_optout=1' });
  next.dnma.page();
  next.advance(500);
  assert.equal(next.sent.length, 0);
  const viaStorage = tagged({ storage: { _dnma_optout: '1' } });
  assert.equal(viaStorage.dnma.isOptedOut(), true);
  viaStorage.dnma.optIn();
  assert.equal(viaStorage.dnma.isOptedOut(), false);
  viaStorage.dnma.page();
  viaStorage.advance(500);
  assert.equal(viaStorage.hits().length, 1);
});

test('Do Not Track is honoured only when configured', () => {
  const honoured = tagged({ doNotTrack: '1' }, { respectDoNotTrack: true });
  honoured.dnma.page();
  honoured.advance(500);
  assert.equal(honoured.sent.length, 0);
  assert.equal(honoured.cookieWrites.length, 0, 'no cookie either');
  const ignored = tagged({ doNotTrack: '1' });
  ignored.dnma.page();
  ignored.advance(500);
  assert.equal(ignored.sent.length, 1);
});

test('UAI check letter: valid ones pass, bad ones warn in debug mode, hits still sent upper case', () => {
  for (const uai of ['0350122T', '0940176F', '0071245R', '0350793X', '6200011T', '7200044K', '9740042C', '0010024W', ' 0350122t ']) {
    const b = tagged({}, { debug: true, uai });
    assert.deepEqual(b.warnings, [], uai);
  }
  const b = tagged({}, { debug: true, uai: '0450822x' });
  assert.equal(b.warnings.length, 1);
  assert.match(b.warnings[0], /0450822X.*check letter.*Z expected/);
  b.dnma.page({ service: 'accueil' });
  b.advance(500);
  assert.equal(b.params()[0].dimension1, '0450822X');
  const c = tagged({}, { debug: true, uai: '0351122O' });
  assert.match(c.warnings[0], /0351122O/);
  const d = tagged({}, { debug: true, uai: '35012T' });
  assert.match(d.warnings[0], /malformed/);
  const quiet = tagged({}, { uai: '0450822X' });
  assert.deepEqual(quiet.warnings, [], 'silent without debug');
});

test('debug warnings: unknown SERVICE / PROFIL / TYPE, missing PROFIL; values are still sent', () => {
  const b = tagged({}, { debug: true, profil: 'directeur' });
  assert.match(b.warnings.join('\n'), /unknown PROFIL "DIRECTEUR"/);
  b.dnma.page({ service: 'cantine', type: 'externe' });
  assert.match(b.warnings.join('\n'), /unknown SERVICE "CANTINE"/);
  assert.match(b.warnings.join('\n'), /unknown TYPE "EXTERNE"/);
  b.dnma.tool('x', { service: 'nope' });
  assert.match(b.warnings.join('\n'), /unknown SERVICE "NOPE"/);
  b.advance(500);
  const p = b.params()[0];
  assert.deepEqual([p.dimension2, p.dimension3, p.dimension5], ['CANTINE', 'EXTERNE', 'DIRECTEUR']);

  const m = tagged({}, { debug: true, profil: undefined });
  m.dnma.page({ service: 'accueil' });
  assert.deepEqual(m.warnings, ['[dnma] PROFIL missing']);
  const all = browser();
  all.dnma.init({ siteId: 1, debug: true });
  all.dnma.page();
  assert.deepEqual(all.warnings, ['[dnma] UAI missing', '[dnma] SERVICE missing', '[dnma] PROFIL missing']);
  assert.deepEqual(all.params(), []);
  all.advance(500);
  assert.equal(all.hits()[0].endpoint, '/matomo.php', 'same-origin default endpoint');
});

test('set() updates properties for the following hits', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.dnma.set({ uai: '0940176f', profil: 'ENSEIGNANT' });
  b.dnma.event('a', 'b');
  b.advance(500);
  const [pv, ev] = b.params();
  assert.equal(pv.dimension1, '0350122T');
  assert.deepEqual([ev.dimension1, ev.dimension5], ['0940176F', 'ENSEIGNANT']);
});

test('link tracking: outlinks, downloads, ignore classes, data-dnma-outil', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  b.click(b.link('https://www.lumni.fr/video'));
  b.click(b.link('/files/Cours%201.PDF'));
  b.click(b.link('/export?id=3', { download: '' }));
  b.click(b.link('/notes'));
  b.click(b.link('https://other.example.org/', { class: 'btn matomo_ignore' }));
  b.click(b.link('mailto:someone@example.fr'));
  b.click(b.link('https://pronote.example.fr/', { 'data-dnma-outil': 'Pronote', 'data-dnma-service': 'notes' }));
  b.advance(500);
  const [, a, c, d, t] = b.params();
  assert.equal(b.params().length, 5);
  assert.equal(a.link, 'https://www.lumni.fr/video');
  assert.equal(c.download, 'https://ent.example.fr/files/Cours%201.PDF');
  assert.equal(d.download, 'https://ent.example.fr/export?id=3');
  assert.deepEqual([t.action_name, t.dimension2, t.dimension3, t.dimension4, t.link, t.ca], ['PRONOTE', 'NOTES', 'TIERS', 'PRONOTE', undefined, undefined]);
});

test('a click that called tool() is not also counted as an outlink', () => {
  const b = tagged();
  b.dnma.page({ service: 'accueil' });
  const a = b.link('https://pronote.example.fr/');
  b.dnma.tool('Pronote', { service: 'notes' });
  b.click(a);
  b.advance(2000);
  b.click(a);
  b.advance(500);
  const p = b.params();
  assert.equal(p.length, 3);
  assert.equal(p[1].dimension4, 'PRONOTE');
  assert.equal(p[2].link, 'https://pronote.example.fr/');
});

test('linkTracking:false turns off automatic outlinks and downloads', () => {
  const b = tagged({}, { linkTracking: false });
  b.dnma.page();
  b.click(b.link('https://www.lumni.fr/'));
  b.click(b.link('/a.zip'));
  b.advance(500);
  assert.equal(b.hits().length, 1);
});

test('transport fallbacks: fetch keepalive without sendBeacon, Image GET without fetch', () => {
  const f = tagged({ beacon: 'refuse' });
  f.dnma.page();
  f.advance(500);
  assert.equal(f.sent[0].via, 'fetch');
  assert.equal(f.sent[0].init.method, 'POST');
  assert.equal(f.sent[0].init.keepalive, true);
  assert.equal(f.params()[0].idsite, '3');

  const img = tagged({ beacon: 'throw', fetch: false });
  img.dnma.page();
  img.dnma.event('c', 'a');
  img.advance(500);
  assert.deepEqual(img.sent.map((s) => s.via), ['image', 'image']);
  assert.match(img.sent[0].url, /^https:\/\/stats\.example\.fr\/matomo\.php\?idsite=3&rec=1&/);
  assert.equal(img.params()[1].e_c, 'c');
});

const SNIPPET = `
  var _paq = window._paq = window._paq || [];
  _paq.push(['setCustomDimension', 1, '0350122T']);
  _paq.push(['setCustomDimension', 2, 'notes']);
  _paq.push(['setCustomDimension', 5, 'PARENT']);
  _paq.push(['setUserId', 'x']);
  _paq.push(['setDocumentTitle', 'Notes']);
  _paq.push(['setCustomUrl', 'https://ent.example.fr/notes']);
  _paq.push(['trackPageView']);
  _paq.push(['enableLinkTracking']);
  _paq.push(['trackEvent', 'cat', 'act', 'name', 1]);
  _paq.push(['enableHeartBeatTimer', 15]);
  (function () {
    var u = 'https://stats.example.fr/';
    _paq.push(['setTrackerUrl', u + 'matomo.php']);
    _paq.push(['setSiteId', '1']);
  })();
`;

test('_paq: the queue of a matomo.js page is processed, setTrackerUrl/setSiteId first', () => {
  const b = browser({ before: SNIPPET });
  b.advance(500);
  const [pv, ev] = b.params();
  assert.equal(b.hits()[0].endpoint, 'https://stats.example.fr/matomo.php');
  const { pv_id, ...rest } = common(pv);
  assert.deepEqual(rest, {
    idsite: '1', rec: '1', apiv: '1', url: 'https://ent.example.fr/notes', action_name: 'Notes', uid: 'x',
    ...clock(b), res: '1920x1080', send_image: '0', dimension1: '0350122T', dimension2: 'NOTES', dimension5: 'PARENT',
  });
  assert.equal(pv.dimension3, undefined, 'no DNMA default imposed on Matomo pages');
  assert.deepEqual([ev.e_c, ev.e_a, ev.e_n, ev.e_v, ev.ca, ev.pv_id], ['cat', 'act', 'name', '1', '1', pv.pv_id]);

  // later pushes, through the global and through the array the snippet kept
  b.run(`_paq.push(['trackLink', 'https://ent.example.fr/a.pdf', 'download'], ['trackLink', 'https://x.org/', 'link'])`);
  b.click(b.link('https://www.lumni.fr/'));
  b.advance(15000);
  const p = b.params();
  assert.equal(p[2].download, 'https://ent.example.fr/a.pdf');
  assert.equal(p[3].link, 'https://x.org/');
  assert.equal(p[4].link, 'https://www.lumni.fr/');
  assert.equal(p[5].ping, '1');
  assert.equal(p.length, 6);
});

test('_paq: setDoNotTrack, optUserOut, functions, Matomo.getTracker, unknown commands', () => {
  const b = browser({
    doNotTrack: '1',
    before: `var _paq = window._paq = []; _paq.push(['setTrackerUrl', '/matomo.php'], ['setSiteId', 2], ['setDoNotTrack', true], ['trackPageView']);`,
  });
  b.advance(500);
  assert.equal(b.sent.length, 0);

  const c = browser({ before: `var _paq = window._paq = []; _paq.push(['setTrackerUrl', '/piwik.php'], ['setSiteId', 2], ['noSuchCommand', 1]);` });
  c.run(`_paq.push([function () { window.vid = this.getVisitorId(); }])`);
  assert.match(c.window.vid, /^[0-9a-f]{16}$/);
  const t = c.run('Matomo.getAsyncTracker()');
  assert.equal(c.run('Piwik.getTracker()'), t);
  t.trackPageView('Custom');
  c.advance(500);
  assert.equal(c.params()[0].action_name, 'Custom');
  assert.equal(c.params()[0]._id, c.window.vid);
  c.run(`_paq.push(['optUserOut'])`);
  assert.equal(c.dnma.isOptedOut(), true);
  t.trackPageView();
  c.advance(500);
  assert.equal(c.hits().length, 1);
  c.run(`_paq.push(['forgetUserOptOut'])`);
  t.trackPageView();
  c.advance(500);
  assert.equal(c.hits().length, 2);
});

test('_paq: requireConsent holds hits until setConsentGiven', () => {
  const b = browser({
    before: `var _paq = window._paq = []; _paq.push(['requireConsent'], ['trackPageView'], ['setTrackerUrl', '/matomo.php'], ['setSiteId', 1]);`,
  });
  b.advance(500);
  b.hide();
  assert.equal(b.sent.length, 0);
  assert.equal(b.cookieWrites.length, 0);
  b.run(`_paq.push(['setConsentGiven'])`);
  assert.equal(b.hits().length, 1);
});

test('no _paq on the page: window._paq is created and works later', () => {
  const b = browser();
  b.run(`var _paq = window._paq = window._paq || []; _paq.push(['setTrackerUrl', '/matomo.php'], ['setSiteId', 1], ['trackPageView'])`);
  b.advance(500);
  assert.equal(b.hits().length, 1);
});

test('hits before init() are dropped with a warning, not thrown', () => {
  const b = browser();
  assert.doesNotThrow(() => b.dnma.page({ service: 'accueil' }));
  b.advance(500);
  assert.equal(b.sent.length, 0);
});

test('never throws into the host page, whatever the input or the browser', () => {
  const evil = { toString() { throw new Error('evil'); } };
  for (const opts of [{}, { cookieThrows: true, storageThrows: true }, { beacon: 'throw', fetch: false }]) {
    const b = browser(opts);
    const d = b.dnma;
    assert.doesNotThrow(() => {
      d.init();
      d.init(null);
      d.init({ ...INIT, uai: evil, debug: true });
      d.init({ ...INIT, uai: 12345, profil: {}, heartbeat: 'abc' });
      d.page(null);
      d.page({ service: evil });
      d.page({ service: 42, url: evil });
      d.event();
      d.event(evil, evil, evil, evil);
      d.download();
      d.outlink(null);
      d.tool();
      d.tool(evil, null);
      d.tool('x', { service: evil });
      d.set(null);
      d.optOut();
      d.isOptedOut();
      d.optIn();
      d.flush();
      b.click({});
      b.click(null);
      b.click(b.link('https://x.org/', { class: evil }));
      b.history.pushState({}, '', '/z');
      b.hide();
      b.window.dispatch('pagehide');
      b.advance(60000);
      b.window.evil = evil;
      b.run(`_paq.push(null, [], [null], ['trackEvent'], ['setCustomDimension', evil, evil], 42)`);
    }, JSON.stringify(opts));
  }
});

test('a page with cookies and storage blocked still measures, without visitor id', () => {
  const b = tagged({ cookieThrows: true, storageThrows: true });
  b.dnma.page({ service: 'accueil' });
  b.advance(500);
  assert.equal(b.hits().length, 1);
  assert.match(b.params()[0]._id, /^[0-9a-f]{16}$/, 'an in-memory id for the page lifetime');
});

test('the ESM build exports the API', async () => {
  const mod = await import('../dist/dnma.esm.js');
  for (const f of ['init', 'page', 'event', 'download', 'outlink', 'tool', 'optOut', 'optIn', 'isOptedOut', 'installPaq']) {
    assert.equal(typeof mod[f], 'function', f);
  }
  assert.equal(typeof mod.default.page, 'function');
  assert.doesNotThrow(() => mod.init({ siteId: 1, heartbeat: 0 }), 'no window in Node: still no throw');
});
