#!/usr/bin/env bash
# A team's journey, end to end, on a generated image folder with string class names (train/ val/ test/):
# a torchvision resnet18 trained in plain PyTorch at 32 px with ImageNet's mean/std is imported as the
# deployed model; the update trains at 64 px with the folder's own statistics (reference, ELODI, plain);
# flip-report and compare run every model through its own preprocessing; then the CI gate as a runner
# sees it (step summary, PR comment, pass and fail exit codes). No option is copied from one model to
# another. Usage: tests/journey/journey.sh WORK_DIR   (MU: the modelupdate command; PY: python)
set -euo pipefail
WORK="$1"
MU="${MU:-modelupdate}"
PY="${PY:-python}"
mkdir -p "$WORK"
cd "$WORK"
FAST=(--epochs 1 --device cpu --quiet)

echo "== the team's data and deployed model"
"$PY" - <<'PYTHON'
import torch, torchvision
from safetensors.torch import save_file

classes = ["cat", "dog", "bird"]
gen = torch.Generator().manual_seed(0)
for split, n in (("train", 24), ("val", 8), ("test", 8)):
    for k, name in enumerate(classes):
        folder = f"images/{split}/{name}"
        import os
        os.makedirs(folder, exist_ok=True)
        for i in range(n):
            base = torch.zeros(3, 32, 32)
            # a class is a faint colour under noise: the deployed model, trained longer, learns it; the
            # update's single optimiser step often does not, so the report has negative flips to show
            base[k] = 0.3
            image = ((base + 0.7 * torch.rand(3, 32, 32, generator=gen)).clamp(0, 1) * 255).to(torch.uint8)
            torchvision.io.write_png(image, f"{folder}/{name}_{i:03d}.png")

# plain PyTorch, as the team trained it: resnet18 at 32 px, ImageNet normalisation
model = torchvision.models.resnet18(num_classes=3)
mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
data = torchvision.datasets.ImageFolder("images/train", transform=torchvision.transforms.ToTensor())
x = torch.stack([(img - mean) / std for img, _ in data])
y = torch.tensor([label for _, label in data])
torch.manual_seed(0)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for _ in range(40):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, "deployed.safetensors")
open("classes.txt", "w").write("\n".join(data.classes) + "\n")  # the logit order ImageFolder gave them
PYTHON
find images -type f | sort > data-before.txt

echo "== import the deployed model (its own preprocessing: 32 px, ImageNet mean/std)"
"$MU" import --arch torchvision.models:resnet18 --weights deployed.safetensors --classes classes.txt \
  --input-shape 3,32,32 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out old.safetensors

echo "== the update at 64 px with the folder's own statistics"
DATA=(--data imagefolder:images --image-size 64)
"$MU" ensemble-train "${DATA[@]}" --arch cnn-s --members 2 "${FAST[@]}" --out ref.safetensors
# the imported model's training data is unknown to the tool: the team says the folder's val/ is apart from it
OLD=(--old old.safetensors --allow-other-data)
"$MU" ldi-train "${DATA[@]}" --arch cnn-s --method elodi --reference ref.safetensors "${OLD[@]}" "${FAST[@]}" \
  --out elodi.safetensors
"$MU" ldi-train "${DATA[@]}" --arch cnn-s --method ce "${OLD[@]}" "${FAST[@]}" --out ce.safetensors

echo "== reports: every model through its own preprocessing"
"$MU" flip-report --data imagefolder:images --old old.safetensors --new elodi.safetensors \
  --html flip.html --json flip.json
"$MU" compare --data imagefolder:images --old old.safetensors ce.safetensors elodi.safetensors ref.safetensors \
  --markdown compare.md --html compare.html

echo "== the CI gate, as a runner runs it"
export GITHUB_STEP_SUMMARY="$WORK/summary.md" GITHUB_ACTIONS=true CI=true
"$MU" predict old.safetensors --data imagefolder:images --out old.npz
"$MU" predict elodi.safetensors --data imagefolder:images --out new.npz
"$MU" flip-report --old old.npz --new new.npz --max-nfr 100% --pr-comment comment-pass.md
set +e
"$MU" flip-report --old old.npz --new new.npz --max-er-increase -100% --pr-comment comment-fail.md
failed=$?
set -e
echo "gate exit codes: pass 0, fail $failed"
test "$failed" = 1
find images -type f | sort > data-after.txt
cmp data-before.txt data-after.txt  # nothing written into the data folder
echo "journey done"
