/**
 * The IIP protocol: a query string of `COMMAND=argument` pairs run left to right against one
 * session. IIIF, DeepZoom and Zoomify are commands of the same string, as in iipsrv, so that IIP
 * modifiers given before them (CNT, GAM ...) apply to what they produce: the router hands their
 * entry commands in, and this runner knows them only by name.
 */
import type { PlainRequest } from '../../request.js';
import { IIP_ERROR, IipError } from '../../errors.js';
import { cvt } from './cvt.js';
import { fif } from './fif.js';
import { obj } from './obj.js';
import { pfl } from './profile.js';
import { spectra } from './spectra.js';
import { atl, jtl, jtls, ptl, til, ttl, wtl } from './tiles.js';
import { bits, hei, lyr, qlt, rgn, rot, sds, wid } from './view-commands.js';
import { cmp, cnt, cnv, col, ctw, gam, inv, minmax, shd } from './processing-commands.js';
import { errorResponse, objectResponse } from './responses.js';
import type { ProtocolContext } from '../shared/context.js';
import type { ProtocolResponse } from '../shared/responses.js';
import { Session, type Command } from '../shared/session.js';

/** Command names are matched case-insensitively; keys here are lower case. */
const IIP_COMMANDS: Readonly<Record<string, Command>> = {
  fif,
  obj,
  qlt,
  bits,
  wid,
  hei,
  rgn,
  rot,
  sds,
  lyr,
  minmax,
  cnt,
  gam,
  inv,
  cmp,
  ctw,
  col,
  shd,
  cnv,
  jtl,
  ptl,
  wtl,
  atl,
  ttl,
  jtls,
  til,
  cvt,
  spectra,
  pfl,
  // iipsrv accepts ICC and does nothing with it (its colour management was never enabled).
  icc: () => undefined,
};

export interface ParsedCommand {
  name: string;
  argument: string;
}

/**
 * Splits on `&`, then at the first `=`. As in iipsrv, a segment with an empty name or an empty
 * value is dropped, and a bare word (`INV`) becomes a command whose argument is its own name.
 * Values stay URL-encoded: each command decodes its own argument.
 */
export function parseCommands(requestString: string): ParsedCommand[] {
  const commands: ParsedCommand[] = [];
  for (const segment of requestString.split('&')) {
    if (segment === '') continue;
    const equals = segment.indexOf('=');
    if (equals < 0) {
      commands.push({ name: segment, argument: segment });
      continue;
    }
    const name = segment.slice(0, equals);
    const argument = segment.slice(equals + 1);
    if (name === '' || argument === '') continue;
    commands.push({ name, argument });
  }
  return commands;
}

/** The first few of a list, each cut short, for a log line. */
function summarise(items: readonly string[], shown = 8, width = 40): string {
  const cut = items.slice(0, shown).map((item) => (item.length > width ? item.slice(0, width) + '…' : item));
  if (items.length > shown) cut.push('...');
  return cut.join(', ');
}

/**
 * Runs a request string. Image and file failures (FileError, InvalidArgumentError ...) propagate to
 * the router, which turns them into 404/400/501; IIP-level errors become the IIP error block.
 * @param protocols the other protocols' entry commands by lower-case name (`iiif`, `deepzoom` ...)
 */
export async function runIip(
  requestString: string,
  request: PlainRequest,
  context: ProtocolContext,
  protocols: Readonly<Record<string, Command>>,
): Promise<ProtocolResponse> {
  const session = new Session(request, context);
  const { log } = context;
  const unsupported: string[] = [];
  for (const { name, argument } of parseCommands(requestString)) {
    if (session.finished) break;
    const key = name.toLowerCase();
    const command = Object.hasOwn(IIP_COMMANDS, key) ? IIP_COMMANDS[key] : Object.hasOwn(protocols, key) ? protocols[key] : undefined;
    if (!command) {
      unsupported.push(name);
      session.errors.push(new IipError(IIP_ERROR.unsupportedCommand, name));
      continue;
    }
    if (log.enabled(3)) log.detail({ command: name, argument }, 'command');
    await command(session, argument);
  }
  // One line per request at most, whatever the client put in it: an 8 KB query of unknown
  // commands wrote 254 KB of log at the default VERBOSITY.
  const beside = session.output !== null && session.errors.length > 0;
  if ((unsupported.length > 0 || beside) && log.enabled(1)) {
    const fields: Record<string, unknown> = {};
    if (unsupported.length > 0) Object.assign(fields, { unsupported: unsupported.length, commands: summarise(unsupported) });
    if (beside) Object.assign(fields, { errors: session.errors.length, messages: summarise(session.errors.map((e) => e.message)) });
    log.info(fields, beside ? 'errors beside an image' : 'unsupported commands');
  }

  if (session.notModified) return { status: 304, headers: session.vary.length > 0 ? [['Vary', session.vary.join(', ')]] : [], body: Buffer.alloc(0) };
  // A produced image wins over errors from other commands: iipsrv sends the image (with the error
  // text appended, which decoders ignore), so viewers that add a stray command still get tiles.
  if (session.output) return session.cacheTier === null ? session.output : { ...session.output, cacheTier: session.cacheTier };
  if (session.errors.length > 0) return errorResponse(session.errors);
  if (session.protocolLine !== null || session.objectLines.length > 0) return objectResponse(session);
  return errorResponse([new IipError(IIP_ERROR.malformedRequest, requestString)]);
}
