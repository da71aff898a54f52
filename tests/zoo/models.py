"""The zoo: small, random-init versions of the models people deploy, built offline.

torchvision is not a dependency, so ResNet-18 and MobileNetV3-Small are hand-written at toy width with
the same op kinds (residual BasicBlocks with BatchNorm and a strided 1×1 downsample; depthwise and
grouped convs, hardswish / hardsigmoid, squeeze-excitation). The Hugging Face models come from tiny
configs (eager attention, no KV cache: `mpsearch.hf.prepare`). Each entry gives the model and one input
batch; `tied` names the parameters that are one tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ZooModel:
    name: str
    model: nn.Module
    x: object                      # one input batch (batch 4)
    classes: int                   # output width (for labels)
    tied: tuple[str, ...] = ()     # parameter paths that share one tensor (one site)
    unsupported: tuple[str, ...] = field(default=())  # weights no site covers, and why (coverage names them)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (stem, 4 stages of 2 BasicBlocks, avgpool, fc) at width 4."""

    def __init__(self, width: int = 4, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans, layers, cin = [width, 2 * width, 4 * width, 8 * width], [], width
        for i, c in enumerate(chans):
            layers.append(nn.Sequential(BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1×1 expand (grouped here, as some variants), depthwise k×k, SE, 1×1 project."""

    def __init__(self, cin: int, exp: int, cout: int, k: int, stride: int, se: bool, groups: int = 1):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(cin, exp, 1, groups=groups, bias=False), nn.BatchNorm2d(exp),
                                    nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False),
                                       nn.BatchNorm2d(exp), nn.Hardswish())
        self.se = SqueezeExcite(exp, max(exp // 4, 2)) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3Small(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(8, 16, 8, 3, 1, se=True, groups=2),
                                    InvertedResidual(8, 24, 12, 5, 2, se=False),
                                    InvertedResidual(12, 24, 12, 3, 1, se=True, groups=4))
        self.head = nn.Sequential(nn.Conv2d(12, 32, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish())
        self.classifier = nn.Sequential(nn.Linear(32, 24), nn.Hardswish(), nn.Linear(24, classes))

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ViT(nn.Module):
    def __init__(self, dim: int = 16, classes: int = 10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


class BareMHA(nn.Module):
    def __init__(self, dim: int = 16):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0].mean(1)


class SharedLinear(nn.Module):
    """One weight used by two layers (an ALBERT-style shared block): one site."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.a = nn.Linear(dim, dim)
        self.b = nn.Linear(dim, dim)
        self.b.weight = self.a.weight
        self.out = nn.Linear(dim, 10)

    def forward(self, x):
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))


class LSTMClassifier(nn.Module):
    def __init__(self, dim: int = 8, hidden: int = 16):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


class _Logits(nn.Module):
    """A Hugging Face model returning its logits tensor (plain outputs export and reload anywhere)."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, ids):
        return self.hf(input_ids=ids).logits[:, -1]


def _hf(kind: str):
    import transformers


    transformers.logging.set_verbosity_error()
    common = dict(vocab_size=40, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, **common)
        return transformers.GPT2LMHeadModel(cfg), ("hf.transformer.wte.weight", "hf.lm_head.weight")
    if kind == "llama":
        cfg = transformers.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                                       tie_word_embeddings=False, **common)
        return transformers.LlamaForCausalLM(cfg), ()
    if kind == "bert":
        cfg = transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=16, **common)
        return transformers.BertForMaskedLM(cfg), ("hf.bert.embeddings.word_embeddings.weight",
                                                   "hf.cls.predictions.decoder.weight")
    cfg = transformers.MixtralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                     num_experts_per_tok=2, max_position_embeddings=16, tie_word_embeddings=False,
                                     **common)
    return transformers.MixtralForCausalLM(cfg), ()


def build(name: str) -> ZooModel:
    torch.manual_seed(0)
    img = torch.randn(4, 3, 16, 16)
    if name in ("gpt2", "llama", "bert", "mixtral"):
        from mpsearch.hf import prepare

        hf, tied = _hf(name)
        model = _Logits(prepare(hf))
        return ZooModel(name, model.eval(), torch.randint(1, 40, (4, 6)), 40, tied)
    table = {
        "resnet18": lambda: ZooModel(name, ResNet18(), img, 10),
        "mobilenet_v3_small": lambda: ZooModel(name, MobileNetV3Small(), img, 10),
        "vit": lambda: ZooModel(name, ViT(), img, 10),
        "mha": lambda: ZooModel(name, BareMHA(), torch.randn(4, 5, 16), 16),
        "shared": lambda: ZooModel(name, SharedLinear(), torch.randn(4, 16), 10, ("a.weight", "b.weight")),
        "lstm": lambda: ZooModel(name, LSTMClassifier(), torch.randn(4, 5, 8), 10,
                                 unsupported=("lstm.weight_ih_l0", "lstm.weight_hh_l0")),
    }
    zm = table[name]()
    zm.model.eval()
    return zm


NAMES = ("resnet18", "mobilenet_v3_small", "vit", "gpt2", "llama", "bert", "mixtral", "mha", "shared", "lstm")
