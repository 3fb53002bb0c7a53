/** The device KV graphs' logic on onnxruntime's CPU provider: runs on every machine. */
import { defineDeviceKvTests } from './deviceKvCases.js';

defineDeviceKvTests('cpu');
