#!/usr/bin/env bash
# The client job of a SLURM build: runs the Dask scheduler and `sarlo build`; the GPU
# workers are separate jobs that dask-jobqueue submits from cluster/jobqueue.yaml.
#
#   sbatch cluster/sbatch-build.sh s3://umbra-open-data-catalog/sar-data/tasks/ s3://my-bucket/work s3://my-bucket/sarlo
#
# When this job reaches its walltime, submit it again with the same arguments: every stage
# resumes from the checkpoints in WORK and completed shards in OUT are kept.
#SBATCH --job-name=sarlo-build
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --output=logs/sarlo-build-%j.out
set -euo pipefail
INPUTS=${1:?inputs (files, folders, globs, s3:// prefixes or a list file)}
WORK=${2:?work store URL}
OUT=${3:?release URL}
WORKERS=${SARLO_WORKERS:-8}
mkdir -p logs
source "$HOME/miniforge3/bin/activate" sarlo
exec sarlo build "$INPUTS" --work "$WORK" --out "$OUT" \
    --config "${SARLO_CONFIG:-cluster/build.yaml}" \
    --cluster "slurm:$(dirname "$0")/jobqueue.yaml" --workers "$WORKERS"
