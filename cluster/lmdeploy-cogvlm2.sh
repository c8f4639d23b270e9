#!/bin/bash
# CogVLM2, the model SARLO-80 captioned with, behind LMDeploy's OpenAI-compatible server
# (vLLM does not run CogVLM2). On a GPU node (or as the body of an sbatch job like
# vllm-server.sbatch); then: sarlo build ... --caption-server http://HOST:23333/v1 \
#   --caption-model THUDM/cogvlm2-llama3-chat-19B
set -euo pipefail
pip install lmdeploy   # its PyTorch engine runs CogVLM2 (about 40 GB in bf16)
exec lmdeploy serve api_server THUDM/cogvlm2-llama3-chat-19B --backend pytorch \
    --server-name 0.0.0.0 --server-port 23333 \
    ${SARLO_CAPTION_KEY:+--api-keys "$SARLO_CAPTION_KEY"}
