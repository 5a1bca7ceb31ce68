"""Small copies of third-party training programs, for the tracer's tests and benchmarks.

Usage::

    python -m deterministic check --trace --seed 0 tests/trace_programs.py --family FAMILY
    python -m deterministic check --seed 0 tests/trace_programs.py --family dcgan --inject worker-numpy
    python tests/trace_programs.py --family gpt2 --steps 10

Families (``--family``, required; several, separated by commas, run in turn in one
interpreter): ``lstm`` (pytorch/examples word_language_model), ``dcgan``
(pytorch/examples DCGAN, with a two-worker DataLoader), ``ema`` (a timm
``ModelEmaV3``-style EMA kept by ``copy.deepcopy``), ``gpt2``, ``resnet`` and ``vit``
(transformers models built from small configs, no downloads) and ``encoder``
(``nn.TransformerEncoder``, whose padded evaluation takes torch's nested-tensor fast path).

The data is fake and every family trains only a few steps (``--steps N`` overrides
that), so a run takes seconds. Nothing here seeds anything: ``check`` seeds the process,
and the point is that these programs are deterministic once it has. Losses are printed
with ``float.hex``, so comparing outputs compares every bit.

``--inject CAUSE`` adds one realistic cause of nondeterminism, on a line ending with
``# cause: CAUSE`` (the tests look the line up by that marker):

* ``worker-numpy`` (``dcgan``): the dataset draws augmentation noise from a fresh,
  unseeded ``np.random.default_rng()`` inside the DataLoader workers.
* ``nan`` (``gpt2``): an outside reading enters the graph and poisons the loss with NaN
  in about half of the runs, which a NaN guard turns into a crash.
* ``threads`` (any family): run 1 uses one intra-op thread, run 2 two. ``check`` gives
  both runs the same environment, so the runs count themselves in the file named by
  ``TRACE_PROGRAMS_COUNTER`` (odd-numbered runs take one thread, even-numbered two).
"""

import argparse
import copy
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

FAMILIES = ("lstm", "dcgan", "ema", "gpt2", "resnet", "vit", "encoder")
DEFAULT_STEPS = {"lstm": 3, "dcgan": 3, "ema": 3, "gpt2": 3, "resnet": 3, "vit": 3, "encoder": 2}
#: Causes that only make sense in one family; the others go anywhere.
CAUSE_FAMILY = {"worker-numpy": "dcgan", "nan": "gpt2"}
COUNTER_VARIABLE = "TRACE_PROGRAMS_COUNTER"

INJECT = "none"


def show(family, step, loss):
    """Print one loss bit for bit."""
    print(f"{family} step {step} loss {float(loss).hex()}")


def quiet_transformers():
    """Import transformers only for the families that use it (its import costs seconds)."""
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


# --- lstm: pytorch/examples word_language_model ---------------------------------------


class RNNModel(nn.Module):
    """Encoder, LSTM and decoder, as in word_language_model/model.py."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nhid, self.nlayers = nhid, nlayers
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, tokens, hidden):
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return nn.functional.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        shape = (self.nlayers, bsz, self.nhid)
        return (weight.new_zeros(shape), weight.new_zeros(shape))


def batchify(data, bsz):
    """Cut a token stream into ``bsz`` columns, time-major like the example."""
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt):
    """The inputs at rows ``i:i+bptt`` and their next-token targets, flattened."""
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def repackage_hidden(h):
    """Cut the graph between batches, so backprop stops at the batch boundary."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def train_lstm(steps):
    """Word-level LSTM language model: truncated BPTT, clipped gradients, hand-written SGD, one eval."""
    ntokens, bsz, eval_bsz, bptt, lr, clip = 200, 4, 2, 8, 20.0, 0.25
    train_data = batchify(torch.randint(ntokens, (bsz * (steps * bptt + 1),)), bsz)
    val_data = batchify(torch.randint(ntokens, (eval_bsz * (2 * bptt + 1),)), eval_bsz)
    model = RNNModel(ntokens, 32, 32, 2, 0.2)
    criterion = nn.NLLLoss()

    model.train()
    hidden = model.init_hidden(bsz)
    for step, i in enumerate(range(0, steps * bptt, bptt)):
        data, targets = get_batch(train_data, i, bptt)
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        # The example steps by hand instead of using torch.optim.SGD.
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        show("lstm", step, loss.item())

    model.eval()
    total_loss = 0.0
    hidden = model.init_hidden(eval_bsz)
    with torch.no_grad():
        for i in range(0, val_data.size(0) - 1, bptt):
            data, targets = get_batch(val_data, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    show("lstm", "eval", total_loss / (len(val_data) - 1))


# --- dcgan: pytorch/examples dcgan, at 16x16 ------------------------------------------


class FakeImages(Dataset):
    """Fixed random 3x16x16 images, flipped and jittered on every read like a torchvision pipeline."""

    def __init__(self, length, inject):
        self.images = torch.rand(length, 3, 16, 16) * 2 - 1
        self.inject = inject  # travels to the workers with the dataset, whatever the start method

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        # Runs in a worker: torch's RNG there is seeded from the main process's, so this replays.
        image = self.images[index]
        if torch.rand(1) < 0.5:
            image = image.flip(-1)
        image = image + 0.05 * torch.randn(image.shape)
        if self.inject == "worker-numpy":
            grain = np.random.default_rng().standard_normal(image.shape, np.float32)  # cause: worker-numpy
            image = image + 0.05 * torch.from_numpy(grain)
        return image, 0


def dcgan_init(m):
    """The example's weights_init: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def train_dcgan(steps):
    """DCGAN: alternating discriminator and generator Adam steps on a shuffled two-worker DataLoader."""
    nz, ngf, ndf, nc, batch_size = 16, 8, 8, 3, 8
    net_g = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    net_d = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )
    net_g.apply(dcgan_init)
    net_d.apply(dcgan_init)
    criterion = nn.BCELoss()
    real_label, fake_label = 1.0, 0.0
    optimizer_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    dataset = FakeImages(batch_size * steps, INJECT)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)

    for step, (real, _) in enumerate(loader):
        net_d.zero_grad()
        label = torch.full((real.size(0),), real_label)
        err_d_real = criterion(net_d(real).view(-1), label)
        err_d_real.backward()
        noise = torch.randn(real.size(0), nz, 1, 1)
        fake = net_g(noise)
        label.fill_(fake_label)
        err_d_fake = criterion(net_d(fake.detach()).view(-1), label)
        err_d_fake.backward()
        optimizer_d.step()

        net_g.zero_grad()
        label.fill_(real_label)  # the generator wants its fakes taken for real
        err_g = criterion(net_d(fake).view(-1), label)
        err_g.backward()
        optimizer_g.step()
        show("dcgan", f"{step} D", (err_d_real + err_d_fake).item())
        show("dcgan", f"{step} G", err_g.item())


# --- ema: timm ModelEmaV3 and a Lightning-style best checkpoint ------------------------


class ModelEma(nn.Module):
    """A timm ``ModelEmaV3``-style average: a deep copy lerped toward the model after each step."""

    def __init__(self, model, decay=0.999, use_foreach=True):
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay, self.use_foreach = decay, use_foreach

    def get_decay(self, step):
        # timm's warmup: early averages follow the model closely.
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model, step):
        weight = 1.0 - self.get_decay(step)
        ema_values, model_values = [], []
        pairs = zip(self.module.state_dict().values(), model.state_dict().values(), strict=True)
        for ema_v, model_v in pairs:
            if not ema_v.is_floating_point():
                ema_v.copy_(model_v)  # num_batches_tracked: an integer count, not averaged
            elif self.use_foreach:
                ema_values.append(ema_v)
                model_values.append(model_v)
            else:
                ema_v.lerp_(model_v, weight)
        if ema_values:
            torch._foreach_lerp_(ema_values, model_values, weight)


def train_ema(steps):
    """A batch-norm CNN with an EMA copy and a deep-copied best state_dict, restored at the end."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    ema = ModelEma(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(steps, 16, 3, 8, 8), torch.randint(10, (steps, 16))
    val_images, val_labels = torch.randn(16, 3, 8, 8), torch.randint(10, (16,))
    best_loss, best_state = math.inf, None

    for step in range(steps):
        model.train()
        loss = nn.functional.cross_entropy(model(images[step]), labels[step])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model, step)
        model.eval()
        with torch.no_grad():
            val_loss = nn.functional.cross_entropy(model(val_images), val_labels).item()
        if val_loss < best_loss:
            # ModelCheckpoint-like: the state_dict shares storage with the model, so keep a copy.
            best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
        show("ema", step, loss.item())
        show("ema", f"{step} val", val_loss)

    with torch.no_grad():
        show("ema", "ema val", nn.functional.cross_entropy(ema.module(val_images), val_labels).item())
        model.load_state_dict(best_state)
        show("ema", "best val", nn.functional.cross_entropy(model(val_images), val_labels).item())


# --- gpt2: transformers causal LM, run_clm_no_trainer style ----------------------------


def train_gpt2(steps):
    """A two-layer GPT-2 from a config: AdamW with decay groups, linear warmup schedule, clipping."""
    transformers = quiet_transformers()
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    no_decay = ("bias", "ln_")
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(s in n for s in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in named if any(s in n for s in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=5e-4)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=1, num_training_steps=steps
    )
    model.train()

    for step in range(steps):
        input_ids = torch.randint(config.vocab_size, (4, 32))
        outputs = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=input_ids)
        loss = outputs.loss
        if INJECT == "nan" and step == 0:
            # An outside reading (24 random bits, exact in float32) enters the graph: it differs
            # in every run, so two runs' traces part here, before any crash. It poisons the loss
            # when odd, so each run crashes with probability 1/2, independently, and at least one
            # of two runs crashes with probability 3/4; when neither does, the traces still differ.
            reading = torch.tensor(float(int.from_bytes(os.urandom(3), "little")))  # cause: nan
            loss = loss * torch.where(reading % 2 == 1, math.nan, 1.0)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is NaN at step {step}")
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        show("gpt2", step, loss.item())


# --- resnet: transformers ResNet with timm-style Mixup ---------------------------------


def train_resnet(steps):
    """A basic-block ResNet from a config, SGD with momentum, Mixup drawing lam from numpy's global RNG."""
    transformers = quiet_transformers()
    config = transformers.ResNetConfig(
        layer_type="basic",
        depths=[1, 1, 1, 1],
        hidden_sizes=[16, 32, 64, 128],
        embedding_size=16,
        num_labels=10,
    )
    model = transformers.ResNetForImageClassification(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    model.train()

    for step in range(steps):
        images, labels = torch.randn(8, 3, 32, 32), torch.randint(10, (8,))
        lam = float(np.random.beta(1.0, 1.0))
        index = torch.randperm(images.size(0))
        mixed = lam * images + (1 - lam) * images[index]
        logits = model(pixel_values=mixed).logits
        loss = lam * nn.functional.cross_entropy(logits, labels) + (1 - lam) * nn.functional.cross_entropy(
            logits, labels[index]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        show("resnet", f"{step} lam {lam.hex()}", loss.item())


# --- vit: transformers ViT -------------------------------------------------------------


def train_vit(steps):
    """A two-layer ViT from a config at 32 px, AdamW with dropout on, then one eval pass."""
    transformers = quiet_transformers()
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=10,
        hidden_dropout_prob=0.1,
    )
    model = transformers.ViTForImageClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    model.train()

    for step in range(steps):
        images, labels = torch.randn(8, 3, 32, 32), torch.randint(10, (8,))
        loss = model(pixel_values=images, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        show("vit", step, loss.item())

    model.eval()
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(10, (8,))
    with torch.no_grad():
        logits = model(pixel_values=images).logits
    show("vit", "eval", nn.functional.cross_entropy(logits, labels).item())
    print("vit eval predictions", logits.argmax(-1).tolist())


# --- encoder: nn.TransformerEncoder and nested tensors ---------------------------------


def train_encoder(steps):
    """A batch-first encoder classifying padded sequences; its padded eval takes the nested fast path."""
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2)
    head = nn.Linear(32, 5)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    # Padding at the end only: the fast path's mask check wants left-aligned sequences.
    lengths = torch.tensor([10, 7, 5, 3])
    padding_mask = torch.arange(10) >= lengths[:, None]
    keep = (~padding_mask).unsqueeze(-1)

    def classify(tokens):
        features = encoder(tokens, src_key_padding_mask=padding_mask)
        return head((features * keep).sum(1) / lengths[:, None])

    for step in range(steps):
        encoder.train()
        tokens, labels = torch.randn(4, 10, 32), torch.randint(5, (4,))
        loss = nn.functional.cross_entropy(classify(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        show("encoder", step, loss.item())

    # eval() and no_grad() are what let TransformerEncoder pack the batch as a nested tensor.
    encoder.eval()
    tokens, labels = torch.randn(4, 10, 32), torch.randint(5, (4,))
    with torch.no_grad():
        show("encoder", "eval", nn.functional.cross_entropy(classify(tokens), labels).item())

        ragged = [torch.randn(3, 8), torch.randn(5, 8)]
        strided = torch.nested.nested_tensor(ragged)
        show("encoder", "nested", torch.nested.to_padded_tensor(strided + strided, 0.0).sum().item())
        jagged = torch.nested.nested_tensor(ragged, layout=torch.jagged)
        show("encoder", "jagged", (jagged * 2).relu().to_padded_tensor(0.0).sum().item())


# --- the command line -----------------------------------------------------------------


def count_run():
    """This run's number (1, 2, ...), counted in the file that ``TRACE_PROGRAMS_COUNTER`` names."""
    path = os.environ.get(COUNTER_VARIABLE)
    if not path:
        sys.exit(f"--inject threads needs {COUNTER_VARIABLE}: a file where the runs count themselves")
    try:
        with open(path) as file:
            count = int(file.read().strip() or 0)
    except FileNotFoundError:
        count = 0
    with open(path, "w") as file:
        file.write(f"{count + 1}\n")
    return count + 1


def main():
    """Parse the arguments and train the chosen family."""
    global INJECT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--family", required=True, help=f"one of {', '.join(FAMILIES)}, or several separated by commas"
    )
    parser.add_argument("--inject", default="none", choices=("none", "worker-numpy", "nan", "threads"))
    parser.add_argument("--steps", type=int, help="training steps (default: 2 or 3, by family)")
    args = parser.parse_args()
    families = args.family.split(",")
    unknown = [family for family in families if family not in FAMILIES]
    if unknown:
        parser.error(f"unknown --family {', '.join(unknown)}: choose from {', '.join(FAMILIES)}")
    wanted = CAUSE_FAMILY.get(args.inject)
    if wanted is not None and [wanted] != families:
        parser.error(f"--inject {args.inject} is for --family {wanted}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    INJECT = args.inject
    if INJECT == "threads":
        torch.set_num_threads(2 - count_run() % 2)  # cause: threads
    trainers = {
        "lstm": train_lstm,
        "dcgan": train_dcgan,
        "ema": train_ema,
        "gpt2": train_gpt2,
        "resnet": train_resnet,
        "vit": train_vit,
        "encoder": train_encoder,
    }
    for family in families:  # several in one interpreter share its imports
        trainers[family](args.steps or DEFAULT_STEPS[family])


if __name__ == "__main__":
    main()
