/** A model folder that cannot be used: the message names the file and what is wrong, never the file's contents. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}
