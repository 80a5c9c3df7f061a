#!/bin/sh
# The release gate: relcomm sends nothing until this exits 0.
# A real plan would ask the deploy system; the sample declares success.
echo "Orion 4.2.0: canary healthy, rollout 100%"
exit 0
