/**
 * Keeps the tree's architecture true (run by `npm run lint`): no import circles anywhere in src/,
 * and imports only in the direction data flows, transport -> router -> protocol -> engine:
 *
 * - the engine knows nothing of protocols, transports or the router;
 * - protocols know nothing of transports or the router; each protocol folder imports only itself
 *   and protocols/shared/, and shared/ imports no protocol;
 * - nothing outside protocols/iip/ imports it but the router's one call into the IIP runner.
 *
 * Type-only imports count: a circle of types is still a circle for a reader. Prints each
 * violation and exits 1 when there is one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** Every .ts file below `dir`, as paths relative to `root` with forward slashes. */
export function sourceFiles(root: string, dir = 'src'): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const relative = `${dir}/${entry.name}`;
    if (entry.isDirectory()) found.push(...sourceFiles(root, relative));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) found.push(relative);
  }
  return found.sort();
}

/** The relative imports of one file's text, resolved to src-relative `.ts` paths. */
export function importsOf(file: string, text: string): string[] {
  const targets = new Set<string>();
  for (const match of text.matchAll(IMPORT)) {
    const specifier = (match[1] ?? match[2])!;
    targets.add(path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, '.ts'));
  }
  return [...targets];
}

/** @param graph each file and the files it imports. @returns each circle once, as a list of files */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (state.get(file) === undefined) visit(file);
  return cycles;
}

const ENGINE = 'src/engine/';
const PROTOCOLS = 'src/protocols/';
const SHARED = 'src/protocols/shared/';
const IIP = 'src/protocols/iip/';
const OUTSIDE_ENGINE = ['src/protocols/', 'src/server/', 'src/tools/', 'src/router.ts', 'src/main.ts', 'src/cli.ts'];
const OUTSIDE_PROTOCOLS = ['src/server/', 'src/tools/', 'src/router.ts', 'src/main.ts', 'src/cli.ts'];

function protocolFolder(file: string): string | null {
  return file.startsWith(PROTOCOLS) ? file.slice(PROTOCOLS.length).split('/')[0] : null;
}

/** @returns why `from` may not import `to`, or null when it may */
export function layerViolation(from: string, to: string): string | null {
  if (from.startsWith(ENGINE) && OUTSIDE_ENGINE.some((p) => to.startsWith(p))) return 'the engine imports nothing above it';
  if (from.startsWith(PROTOCOLS) && OUTSIDE_PROTOCOLS.some((p) => to.startsWith(p))) return 'protocols import no transport or router';
  const fromFolder = protocolFolder(from);
  const toFolder = protocolFolder(to);
  if (fromFolder && toFolder && fromFolder !== toFolder && toFolder !== 'shared') {
    if (from.startsWith(SHARED)) return 'protocols/shared/ imports no protocol';
    return `protocols/${fromFolder}/ imports only itself and protocols/shared/`;
  }
  if (to.startsWith(IIP) && !from.startsWith(IIP) && !(from === 'src/router.ts' && to === `${IIP}index.ts`)) {
    return "only the router's call into the IIP runner imports protocols/iip/";
  }
  return null;
}

/** Every violation in the tree at `root`, as printable lines. */
export function checkArchitecture(root: string): { files: number; problems: string[] } {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(root)) graph.set(file, importsOf(file, readFileSync(path.join(root, file), 'utf8')));
  const problems: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      if (!graph.has(to)) problems.push(`${from}: imports ${to}, which does not exist`);
      const why = layerViolation(from, to);
      if (why) problems.push(`${from} -> ${to}: ${why}`);
    }
  }
  for (const cycle of findCycles(graph)) problems.push(`import circle: ${cycle.join(' -> ')}`);
  return { files: graph.size, problems };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const { files, problems } = checkArchitecture(root);
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) {
    console.error(`${problems.length} architecture problem(s) in ${files} files`);
    process.exit(1);
  }
  console.log(`architecture: ${files} files, no import circles, imports follow the layers`);
}
