/**
 * A policy that cannot run with these settings on this cache (the reference mode reproduces the
 * official classes' failures on short prompts; a budget out of range). It is the session's
 * settings, not a fault of the engine: the server answers it as invalid parameters. Every other
 * error the engine throws is a bug.
 */
export class KvSettingsError extends RangeError {
  override name = 'KvSettingsError';
}
