// Drives the stock `matomo-tracker` npm package against the collector (argv: trackerUrl, siteId, runId).
'use strict';
const MatomoTracker = require('matomo-tracker');

const [trackerUrl, siteId, runId] = process.argv.slice(2);
const tracker = new MatomoTracker(Number(siteId), trackerUrl);
const errors = [];
tracker.on('error', (err) => errors.push(String(err)));
const page = `https://ent.demo.example/node/${runId}`;
const dims = { dimension1: '0350122T', dimension2: 'NOTES', dimension3: 'NATIF', dimension5: 'ELEVE' };

tracker.track({ url: page, action_name: 'Node page', _id: '00000000000000aa', ...dims });
tracker.track({ url: page, e_c: 'node', e_a: 'click', e_n: runId, e_v: 2.5, _id: '00000000000000aa', ...dims });
tracker.track({ url: page, download: `${page}/file.pdf`, _id: '00000000000000aa', ...dims });
tracker.trackBulk(
  [
    { url: `${page}/bulk1`, action_name: 'bulk one', _id: '00000000000000ab', ...dims },
    { url: `${page}/bulk2`, action_name: 'bulk two', _id: '00000000000000ab', ...dims },
  ],
  (body) => {
    // Let the three single requests finish too before reporting.
    setTimeout(() => {
      process.stdout.write(JSON.stringify({ bulk: body, errors }) + '\n');
    }, 500);
  },
);
