/**
 * The failures a protocol can report, each mapped to the status iipsrv's users expect.
 * Messages are shown to clients, so they name the image as the client asked for it and never the
 * filesystem path it resolved to (iipsrv 1.1 leaks the full path; we do not).
 */

/** The image cannot be opened or read (missing, unreadable, not tiled, corrupt): 404 as in iipsrv. */
export class FileError extends Error {
  override name = 'FileError';
}

/** The request is syntactically wrong or asks for something impossible: 400. */
export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
}

/** A well-formed request for something this server does not do: 501. */
export class NotImplementedError extends Error {
  override name = 'NotImplementedError';
}

/** The server could not do its part (a decoder that hung or is missing): 500 with the reason. */
export class ServerFailureError extends Error {
  override name = 'ServerFailureError';
}

/** IIP's own error lines (`Error/<n>:<class> <number> <argument>`), answered with 400. */
export class IipError extends Error {
  override name = 'IipError';
  constructor(
    /** Class and number, e.g. `1 3` (image unavailable) or `2 2` (unsupported command). */
    readonly code: string,
    readonly argument: string,
  ) {
    super(`${code} ${argument}`);
  }
}

export const IIP_ERROR = {
  /** No image, or the image could not be opened. */
  imageUnavailable: '1 3',
  /** The request produced nothing. */
  malformedRequest: '2 1',
  /** The command is not one we know. */
  unsupportedCommand: '2 2',
  /** OBJ asked for an object we do not know. */
  unsupportedObject: '3 2',
} as const;

/** The image store refused us (wrong credentials, a private bucket): 403. */
export class AccessDeniedError extends Error {
  override name = 'AccessDeniedError';
}

/** The image store is down, too slow, or the image changed while it was read: 503, worth a retry. */
export class UnavailableError extends Error {
  override name = 'UnavailableError';
}

/** The image store answered something impossible (ignored a Range, a short body): 502. */
export class BadGatewayError extends Error {
  override name = 'BadGatewayError';
}
