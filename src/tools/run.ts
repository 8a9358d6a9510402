/**
 * Runs a cache tool for the command line: its report on stdout and stderr, its failures as
 * `iipsrv TOOL: message`, and its exit status (0 done, 1 failed).
 */
import type { CliCommand } from '../cli.js';
import type { Config } from '../config.js';
import { purge } from './purge.js';
import { ToolFailure, type ToolReport } from './tool-engine.js';
import { warm } from './warm.js';

export type ToolCommand = Extract<CliCommand, { kind: 'warm' | 'purge' }>;

/** @returns the exit status */
export async function runCacheTool(command: ToolCommand, config: Config): Promise<number> {
  const report: ToolReport = {
    // On a terminal only: from cron, anything on stderr is mailed, and should mean a failure.
    progress: (line) => {
      if (process.stderr.isTTY) process.stderr.write(`iipsrv ${command.kind}: ${line}\n`);
    },
    result: (line) => process.stdout.write(`${line}\n`),
  };
  try {
    if (command.kind === 'warm') await warm(config, command, report);
    else await purge(config, command.image, report);
    return 0;
  } catch (error) {
    const message = error instanceof ToolFailure ? error.message : `failed: ${(error as Error).stack ?? String(error)}`;
    process.stderr.write(`iipsrv ${command.kind}: ${message}\n`);
    return 1;
  }
}
