/* eslint-disable -- plain CommonJS sample for tools/host; the repository's TypeScript rules do not apply */
// Same suite with one deliberately failing test: the runner must exit non-zero.
'use strict';
module.exports.run = () => require('./index.js').run({ variant: 'fail' });
