#!/usr/bin/env bash
# The full-length language-model runs that fit a GPU session (15 minutes of device time, 10 per command), and the
# taggers and classifier that start from them: each part trains and evaluates in the same command, so no checkpoint
# has to travel; logs, metrics.csv and the test (or, for SST-2, validation) numbers go to OUT_DIR (checkpoints stay in
# a scratch folder, where a later part of the same command finds an earlier part's).
#   lstm: WikiText-2 650x2 tied LSTM made fast (recipes/lm/wikitext2_lstm_650x2_tied_fast.yaml): bf16-mixed, 64
#         streams with the learning rate raised to 40 (clipped updates: fewer, larger steps), 32 evaluation streams,
#         4 minutes of training. Target: test perplexity <= 94.3 (pytorch/examples' 40 epochs) in <= 5 minutes on one
#         H100. Expected (estimated, not yet run): 30-40 epochs in the 4 minutes (this net measured 370-400k
#         tokens/s in bf16 at 64 x 70 on an H100); test perplexity 95-105: at a CPU's size these settings trail the
#         recipe's at equal epochs, by 7% in validation perplexity after 6 epochs (benchmarks/fast_lm_settings.py).
#   sst2: after lstm in the same command: ULMFiT's stages 2 and 3 from that LM (recipes/lm/sst2_lm_finetune.yaml,
#         then recipes/classification/sst2_ulmfit.yaml), bf16-mixed, 2 minutes each; SST-2 dev accuracy (target 86).
#         Not yet run; the CPU-sized chain (_budget recipes) reaches the accuracy in the README.
#   awd:  AWD-LSTM on WikiText-2, recipes/lm/awd_lstm_wikitext2_budget.yaml (4.5 minutes of training). Expected
#         (estimated, not yet run): 15-20 epochs, validation and test perplexity near 100 (AWD reaches 68.6 after
#         750 epochs).
#   chars: the character LMs of contextual string embeddings at flair's size (1 x 2048, bf16), forward then backward
#         (recipes/lm/wikitext2_char_lstm_2048_{forward,backward}.yaml), 3 minutes of training each. Not yet run; the
#         CPU-sized 1 x 256 models reach 1.756 / 1.758 test bits per character after 3 epochs.
#   taggers: after chars in the same command (give chars 2 minutes each with CHAR_MINUTES=2 to fit 10 minutes): the
#         CoNLL-2003 NER and UD EWT UPOS string-embedding taggers on those two LMs, 2 minutes each; test F1 (target
#         86) and accuracy (target 95.5). Not yet run.
# Each part takes about 5 minutes (sst2 and taggers: 5 together): run them as separate commands within one session,
#   PARTS="lstm sst2" bash benchmarks/run_lm_gpu.sh OUT_DIR ; PARTS=awd bash benchmarks/run_lm_gpu.sh OUT_DIR
#   CHAR_MINUTES=2 PARTS="chars taggers" bash benchmarks/run_lm_gpu.sh OUT_DIR
#   SMOKE=1 bash benchmarks/run_lm_gpu.sh OUT_DIR        # CPU, tiny networks, a few steps: checks the script itself
# DATA_ROOT: the folder holding wikitext-2/, sst2/, conll2003/, ud-english-ewt/ (default: data/ in the checkout, as
# the README lays it out, else ../shared/data or shared/data); PYTHON: the interpreter.
set -uo pipefail
out=$(mkdir -p "${1:?usage: bash benchmarks/run_lm_gpu.sh OUT_DIR}" && cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
data=${DATA_ROOT:-}
if [ -z "$data" ]; then
    for candidate in "$repo/data" "$repo/../shared/data" "$repo/shared/data"; do
        [ -d "$candidate/wikitext-2" ] && data=$candidate && break
    done
fi
data=$(cd "${data:?no wikitext-2 found: set DATA_ROOT}" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/run_lm_gpu.XXXXXX")
for corpus in wikitext2 sst2 conll2003 ud_ewt; do  # data/... -> $data/...
    sed "s|\([: ]\)data/|\1$data/|" "$repo/recipes/data/${corpus}_local.yaml" > "$scratch/${corpus}_here.yaml"
done
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0

if [ "${SMOKE:-0}" = 1 ]; then  # tiny networks on the CPU: every option the real runs use, but bf16 and the size
    small=(--trainer.accelerator cpu --trainer.precision 32 --trainer.max_steps 3 --trainer.max_time null
           --trainer.limit_val_batches 2 --trainer.limit_test_batches 2 --trainer.val_check_interval 3
           --model.init_args.embedding_dim 16 --model.init_args.hidden_size 16 --data.init_args.batch_size 4)
    awd_small=(--model.init_args.last_hidden_size 16)
    limit=300
else
    small=() awd_small=() limit=330
fi

part() {  # part NAME RECIPE CORPUS test|validate ARGS...: fit recipes/RECIPE, then evaluate its kept checkpoint
    local name=$1 recipe=$repo/recipes/$2 data=$scratch/$3_here.yaml evaluate=$4 start=$SECONDS rc
    shift 4
    local ckpt_dir
    ckpt_dir=$scratch/checkpoints/$(basename "$recipe" .yaml)
    mkdir -p "$out/$name"
    echo "=== $name: fit (limit ${limit} s)"
    (cd "$scratch" && timeout "$limit" "$py" -m rnn_lightning.cli fit -c "$recipe" -c "$data" \
        --trainer.logger lightning.pytorch.loggers.CSVLogger \
        --trainer.logger.save_dir "$out/$name" --trainer.enable_progress_bar false "$@" "${small[@]}")
    rc=$?
    local best
    best=$(ls "$ckpt_dir"/*.ckpt 2>/dev/null | grep -v '/last.ckpt$' | head -1)
    if [ "$rc" -eq 0 ] && [ -n "$best" ]; then
        echo "=== $name: $evaluate $best"
        (cd "$scratch" && timeout 120 "$py" -m rnn_lightning.cli "$evaluate" -c "$recipe" -c "$data" \
            --ckpt_path "$best" --trainer.logger false --trainer.enable_progress_bar false "$@" "${small[@]}") \
            | tee "$out/$name/$evaluate.txt"
        rc=${PIPESTATUS[0]}
    else
        echo "=== $name: no checkpoint to evaluate (fit exit $rc)"
        rc=1
    fi
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || failed=1
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
    for name in ${PARTS:-lstm awd}; do
        case $name in
            lstm) part wikitext2_lstm_650x2_tied_fast lm/wikitext2_lstm_650x2_tied_fast.yaml wikitext2 test ;;
            sst2) part sst2_lm_finetune lm/sst2_lm_finetune.yaml sst2 validate \
                    --model.init_args.init_from checkpoints/wikitext2_lstm_650x2_tied_fast/last.ckpt \
                    --trainer.precision bf16-mixed --trainer.max_time 00:00:02:00
                part sst2_ulmfit classification/sst2_ulmfit.yaml sst2 validate \
                    --trainer.precision bf16-mixed --trainer.max_time 00:00:02:00 ;;
            awd) part awd_lstm_wikitext2_budget lm/awd_lstm_wikitext2_budget.yaml wikitext2 test "${awd_small[@]}" ;;
            chars) for direction in forward backward; do
                    part "wikitext2_char_lstm_2048_$direction" "lm/wikitext2_char_lstm_2048_$direction.yaml" \
                        wikitext2 test --trainer.max_time "00:00:0${CHAR_MINUTES:-3}:00"
                done ;;
            taggers) lms=checkpoints/wikitext2_char_lstm_2048_forward/best.ckpt
                lms="[$lms,${lms//forward/backward}]"
                part conll2003_ner_string_embeddings_2048 tagging/conll2003_ner_string_embeddings.yaml conll2003 \
                    test --model.init_args.lm_checkpoints "$lms" --trainer.max_time 00:00:02:00
                part ud_ewt_upos_string_embeddings_2048 tagging/ud_ewt_upos_string_embeddings.yaml ud_ewt \
                    test --model.init_args.lm_checkpoints "$lms" --trainer.max_time 00:00:02:00 ;;
            *) echo "unknown part $name (lstm, sst2, awd, chars, taggers)"; failed=1 ;;
        esac
    done
    rm -rf "$scratch"
    exit $failed
} 2>&1 | tee -a "$out/run_lm_gpu.log"
exit "${PIPESTATUS[0]}"
