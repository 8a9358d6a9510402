// Regenerates examples/images/example.tif, the small pyramid TIFF the quick start serves.
// Usage: node scripts/make-example-image.mjs
import sharp from 'sharp';

const width = 1200;
const height = 800;
const cells = [];
const colours = ['#d62828', '#f77f00', '#fcbf49', '#2a9d8f', '#264653', '#6a4c93', '#1982c4', '#8ac926'];
for (let row = 0; row < 4; row++) {
  for (let col = 0; col < 6; col++) {
    const colour = colours[(row * 6 + col) % colours.length];
    cells.push(`<rect x="${col * 200 + 10}" y="${row * 200 + 10}" width="180" height="180" rx="24" fill="${colour}"/>`);
    cells.push(
      `<text x="${col * 200 + 100}" y="${row * 200 + 118}" font-family="sans-serif" font-size="64" text-anchor="middle" fill="white">${row * 6 + col}</text>`,
    );
  }
}
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#f1faee"/><stop offset="1" stop-color="#a8dadc"/></linearGradient></defs>
<rect width="100%" height="100%" fill="url(#g)"/>${cells.join('')}</svg>`;

await sharp(Buffer.from(svg))
  .flatten({ background: '#ffffff' })
  .tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 85 })
  .toFile(new URL('../examples/images/example.tif', import.meta.url).pathname);
console.log('wrote examples/images/example.tif');
