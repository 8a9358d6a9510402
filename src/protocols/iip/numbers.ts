/**
 * iipsrv parses arguments with C's atoi/atof: leading numbers are taken, junk becomes 0. Clients
 * rely on that leniency (`JTL=2` means resolution 2, tile 2), so the parsers here keep it.
 */

export function atoi(text: string): number {
  const match = /^\s*([+-]?\d+)/.exec(text);
  if (!match) return 0;
  const value = Number.parseInt(match[1]!, 10);
  return Number.isSafeInteger(value) ? value : value > 0 ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER;
}

export function atof(text: string): number {
  const match = /^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)/.exec(text);
  if (!match) return 0;
  const value = Number.parseFloat(match[1]!);
  return Number.isFinite(value) ? value : 0;
}

/** Comma-separated numbers, as many as parse. */
export function numberList(text: string, parse: (s: string) => number = atof): number[] {
  return text.split(',').map((part) => parse(part));
}

/**
 * `count` integers separated by commas, read the way iipsrv reads them: each value starts after
 * the previous comma, and once the commas run out the last part is read again (`0,0,3` reads
 * 0, 0, 3, 3).
 */
export function atoiChain(text: string, count: number): number[] {
  const values: number[] = [];
  let rest = text;
  for (let i = 0; i < count; i++) {
    values.push(atoi(rest));
    const comma = rest.indexOf(',');
    if (comma >= 0) rest = rest.slice(comma + 1);
  }
  return values;
}

/** C's `%.<digits>f` (`nan`, `inf` included), which iipsrv uses for sample values. */
export function formatFixed(value: number, digits: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  // toFixed switches to exponents from 1e21; printf never does.
  if (Math.abs(value) >= 1e21) return `${BigInt(Math.round(value))}.${'0'.repeat(digits)}`;
  return value.toFixed(digits);
}
