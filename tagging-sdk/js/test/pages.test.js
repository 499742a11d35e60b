// The demo pages of test/pages/ run in the fake browser: their inline scripts,
// then the built tag, give the hits the end-to-end tests will look for.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { browser } from './browser.js';

const scripts = (name) => [...readFileSync(new URL(`pages/${name}.html`, import.meta.url), 'utf8')
  .matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);

function open(name, query) {
  const b = browser({ load: false, href: `https://ent.example.fr/pages/${name}.html${query}` });
  b.run(scripts(name)[0]);
  b.loadTag();
  if (b.appended[0].onload) b.appended[0].onload();
  b.advance(500);
  return b;
}

test('good.html: tag from the endpoint base, all properties, no warning', () => {
  const b = open('good', '?endpoint=https://c.example.fr/matomo.php&idsite=7');
  assert.equal(b.appended[0].src, 'https://c.example.fr/dnma.js');
  const [hit] = b.hits();
  assert.equal(hit.endpoint, 'https://c.example.fr/matomo.php');
  const p = hit.params;
  assert.equal(p.idsite, '7');
  assert.deepEqual([1, 2, 3, 5, 6, 7, 8].map((i) => p['dimension' + i]),
    ['0350122T', 'ACCUEIL', 'NATIF', 'ENSEIGNANT', 'ENT_BRETAGNE', 'Exploitant Démo', 'Plateforme Démo']);
  assert.equal(b.window.dnmaWarnings.length, 0, b.window.dnmaWarnings.join('\n'));
});

test('good.html defaults to the same origin', () => {
  const b = open('good', '');
  assert.equal(b.appended[0].src, '/dnma.js');
  assert.equal(b.hits()[0].endpoint, '/matomo.php');
  assert.equal(b.params()[0].idsite, '1');
});

test('bad.html: warns about the UAI letter, the unknown service and the missing PROFIL, still sends', () => {
  const b = open('bad', '?idsite=2');
  const w = b.window.dnmaWarnings.join('\n');
  assert.match(w, /0450822X.*Z expected/);
  assert.match(w, /unknown SERVICE "CANTINE"/);
  assert.match(w, /PROFIL missing/);
  const p = b.params()[0];
  assert.deepEqual([p.dimension1, p.dimension2, p.dimension5], ['0450822X', 'CANTINE', undefined]);
});

test('matomo.html: the _paq snippet loads /matomo.js and its page view goes out', () => {
  const b = open('matomo', '?idsite=4&heartbeat=5');
  assert.equal(b.appended[0].src, '/matomo.js');
  const p = b.params()[0];
  assert.deepEqual([p.idsite, p.uid, p.action_name, p.dimension1, p.dimension2], ['4', 'pseudo-parent-51', 'Notes - ENT démo', '0350122T', 'NOTES']);
  b.advance(5000);
  assert.equal(b.params()[1].ping, '1');
});
