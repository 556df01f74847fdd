#!/bin/sh
# The "must show" runs of docs/attacks.md (part 2 attacks) on the undefended MNIST model runs/base_mnist.h5
# (tools/train_baseline.py --defense=none --dataset=mnist --data_dir=../shared/data --epochs=10
#  --output=runs/base_mnist.h5; clean accuracy 99.07%). Each run writes one JSON here; a finished run is skipped.
# Usage (from the repository root): sh docs/attacks_part2/run.sh
set -e
OUT=docs/attacks_part2
run() {
  name=$1; shift
  if [ -f "$OUT/$name.json" ]; then echo "skip $name (done)"; return; fi
  .venv/bin/python tools/attack.py --model=runs/base_mnist.h5 --dataset=mnist --data_dir=../shared/data --passes=1 \
    --seed=0 --output="$OUT/$name.json" "$@" 2>&1 | grep -v -E "^(WARNING|I0000|E0000|W0000)|oneDNN|cuda|rebuild TensorFlow"
}
run ead_targeted --attack=ead --num_images=10 --targets=all
run ead_l1_targeted --attack=ead_l1 --num_images=10 --targets=all
run deepfool --attack=deepfool --num_images=100 --targets=none
run deepfool_linf --attack=deepfool_linf --num_images=100 --targets=none
run square_linf_0.3 --attack=square --eps=0.3 --max_queries=5000 --num_images=100 --targets=none
run pgd_0.1_100 --attack=pgd --eps=0.1 --nb_iter=100 --num_images=100 --targets=none
run apgd_ce_0.1_100 --attack=apgd_ce --eps=0.1 --nb_iter=100 --num_images=100 --targets=none
run apgd_dlr_0.1_100 --attack=apgd_dlr --eps=0.1 --nb_iter=100 --num_images=100 --targets=none
run substitute_fgsm_0.3 --attack=substitute_fgsm --eps=0.3 --num_images=500 --targets=none
run substitute_cw_l2_targeted --attack=substitute_cw_l2 --num_images=10 --targets=all
run bpda_sigmoid_pgd_0.3 --attack=pgd --loss=bpda_sigmoid --eps=0.3 --num_images=100 --targets=none
run fgsm_cleverhans_0.3 --attack=fgsm --backend=cleverhans --eps=0.3 --num_images=100 --targets=none
run fgsm_0.3 --attack=fgsm --eps=0.3 --num_images=100 --targets=none
run zoo_untargeted --attack=zoo --num_images=10 --targets=none
run zoo_untargeted_20k --attack=zoo --max_queries=20000 --num_images=10 --targets=none
run apgd_ce_0.3_100 --attack=apgd_ce --eps=0.3 --nb_iter=100 --num_images=100 --targets=none
run pgd_0.3_100 --attack=pgd --eps=0.3 --nb_iter=100 --num_images=100 --targets=none
run substitute_cw_l2_targeted_k20 --attack=substitute_cw_l2 --confidence=20 --num_images=10 --targets=all
run zoo_targeted --attack=zoo --num_images=3 --targets=all
