/** `full`: keeps every slot (the reference's `origin` kv_mode, lookm-spec §6.1). The baseline of every comparison. */
import type { Selector } from '../select.js';

export const selectFull: Selector = () => null;
