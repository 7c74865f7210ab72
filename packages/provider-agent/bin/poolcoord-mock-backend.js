#!/usr/bin/env node
// A committed entry point, so that npm links the command before the build has made dist/.
import '../dist/mock-backend-cli.js'
