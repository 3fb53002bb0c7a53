/**
 * `--device` as the user writes it, checked. Apart from `device.ts` so that the server's thread
 * can parse the flag without loading onnxruntime (only the engine's worker thread does).
 */
export const DEVICE_REQUESTS = ['auto', 'cpu', 'webgpu', 'cuda'] as const;
export type DeviceRequest = (typeof DEVICE_REQUESTS)[number];
export type ExecutionProvider = Exclude<DeviceRequest, 'auto'>;

/** A device the user asked for cannot be used; the message says what to do. */
export class DeviceError extends Error {
  override name = 'DeviceError';
}

/** `--device`'s value, checked. */
export function parseDeviceRequest(value: string): DeviceRequest {
  const known = DEVICE_REQUESTS.find((d) => d === value);
  if (!known) throw new DeviceError(`--device must be one of ${DEVICE_REQUESTS.join(', ')}, got "${value}"`);
  return known;
}
