// Fails when the minified IIFE tag, gzipped, is over the 4 KB budget.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET = 4096;
const file = new URL('../dist/dnma.iife.js', import.meta.url);
const raw = readFileSync(file);
const gzip = gzipSync(raw, { level: 9 }).length;
console.log(JSON.stringify({ file: 'dist/dnma.iife.js', minified: raw.length, gzip, budget: BUDGET }));
if (gzip > BUDGET) {
  console.error(`dnma.iife.js is ${gzip} bytes gzipped, over the ${BUDGET}-byte budget`);
  process.exit(1);
}
