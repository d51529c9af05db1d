// Errors the service answers with, in A1111's shape: {error, detail, body, errors}
// (modules/api/api.py, api_middleware.handle_exception).

/** An error with its HTTP status; `detail` is what A1111 puts there (a message or a list). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly detail: unknown,
    readonly errorName = 'HTTPException',
  ) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
  }
}

/** 422: a value the request may not have. */
export const invalid = (detail: string): ApiError => new ApiError(422, detail);

/** The queue is full, or the server is shutting down. */
export class QueueFullError extends ApiError {
  constructor(detail = 'the queue is full: try again later') {
    super(503, detail, 'QueueFull');
  }
}

/** A job that was taken off the queue before it ran (its client went away, or shutdown). */
export class CancelledError extends Error {
  constructor(message = 'cancelled') {
    super(message);
    this.name = 'CancelledError';
  }
}

/** The A1111 error body. */
export function errorBody(e: Error & { detail?: unknown }): { error: string; detail: unknown; body: string; errors: string } {
  return { error: e instanceof ApiError ? e.errorName : e.name || 'Error', detail: e.detail ?? '', body: '', errors: e.message };
}
