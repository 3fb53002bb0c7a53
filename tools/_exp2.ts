import { Checkpoint } from '../sidecar/src/model/checkpoint.js';
const s = performance.now();
const c = Checkpoint.open('sidecar/model');
console.log(c.config.text, (performance.now() - s).toFixed(1), 'ms');
