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
#SBATCH --output=sarlo-build-%j.out   # in the submit folder (SLURM opens it before the script runs)
set -euo pipefail
INPUTS=${1:?inputs (files, folders, globs, s3:// prefixes or a list file)}
WORK=${2:?work store URL}
OUT=${3:?release URL}
WORKERS=${SARLO_WORKERS:-8}
# SLURM runs a copy of this script from its spool folder: paths are relative to the folder
# the job was submitted from (the repository's root, as above)
cd "${SLURM_SUBMIT_DIR:-.}"
mkdir -p logs
# the environment: environment.yml's conda env by default; SARLO_ACTIVATE for another
eval "${SARLO_ACTIVATE:-source \"\$HOME/miniforge3/bin/activate\" sarlo}"
exec sarlo build "$INPUTS" --work "$WORK" --out "$OUT" \
    --config "${SARLO_CONFIG:-cluster/build.yaml}" \
    --cluster "slurm:${SARLO_JOBQUEUE:-cluster/jobqueue.yaml}" --workers "$WORKERS"
