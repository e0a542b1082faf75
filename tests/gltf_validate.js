// Validate a glTF/GLB file with the Khronos glTF-Validator (npm package "gltf-validator").
// usage: node tests/gltf_validate.js FILE [NODE_MODULES_DIR]
// Prints the validator's JSON report on stdout; exit code 0 when it ran (errors are in the
// report's issues.numErrors), 3 when the package cannot be loaded.
"use strict";
const fs = require("fs");
const path = require("path");

const file = process.argv[2];
const modules = process.argv[3] || path.join(__dirname, "..", ".tools", "node_modules");
let validator;
try {
  validator = require(path.join(modules, "gltf-validator"));
} catch (e) {
  process.stderr.write(`gltf-validator not found under ${modules}: ${e.message}\n`);
  process.exit(3);
}
const data = new Uint8Array(fs.readFileSync(file));
validator
  .validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 200,
    externalResourceFunction: (uri) =>
      new Promise((resolve, reject) => {
        fs.readFile(path.join(path.dirname(file), decodeURIComponent(uri)), (err, buf) =>
          err ? reject(err.toString()) : resolve(new Uint8Array(buf)));
      }),
  })
  .then((report) => {
    process.stdout.write(JSON.stringify(report));
  })
  .catch((err) => {
    process.stderr.write(`validation failed: ${err}\n`);
    process.exit(4);
  });
