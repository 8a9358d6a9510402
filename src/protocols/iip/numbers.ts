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
