#!/usr/bin/env node
// A committed entry point so the bin link exists before the first build.
import "../dist/cli/main.js";
