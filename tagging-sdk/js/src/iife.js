// Entry of dist/dnma.iife.js, the file served as /dnma.js, /matomo.js and /piwik.js:
// exposes window.dnma and takes over a matomo.js-style window._paq queue.
import dnma, { installPaq } from './dnma.js';

window.dnma = dnma;
installPaq();
