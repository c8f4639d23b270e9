#!/bin/bash
# CogVLM2, the model SARLO-80 captioned with, behind LMDeploy's OpenAI-compatible server
# (vLLM does not run CogVLM2). On a GPU node (or as the body of an sbatch job like
# vllm-server.sbatch); then: sarlo build ... --caption-server http://HOST:23333/v1 \
#   --caption-model THUDM/cogvlm2-llama3-chat-19B
# Install LMDeploy once, at a version you pin (pip install 'lmdeploy==X.Y.Z'): a server
# upgrade can change captions while the build's caption settings stay the same. LMDeploy
# takes its keys on the command line (--api-keys): on a shared node, run it where other
# users cannot list your processes, or behind a proxy that holds the key.
set -euo pipefail
command -v lmdeploy > /dev/null || { echo "lmdeploy not found: pip install lmdeploy" >&2; exit 3; }
exec lmdeploy serve api_server THUDM/cogvlm2-llama3-chat-19B --backend pytorch \
    --server-name 0.0.0.0 --server-port 23333 \
    ${SARLO_CAPTION_KEY:+--api-keys "$SARLO_CAPTION_KEY"}
