"""The two backbones of the GPU benchmark, headless (features out), as torchvision builds them: ResNet-50 (2048
features, 4.09 GMACs at 224 px) and ViT-B/16 (768 features, 17.56 GMACs at 224 px). torchvision's own when it is
installed; otherwise the same architectures written out here (a GPU node may have torch without torchvision), with
torchvision's layer shapes, so the FLOPs and the kernels are the same."""
import torch
from torch import nn

GMACS_224 = {"resnet50": 4.09, "vit_b_16": 17.56}  # torchvision's published _ops (GFLOPS there count MACs)


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity()
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        layers, inplanes = [], 64
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for b in range(blocks):
                layers.append(Bottleneck(inplanes, planes, stride if b == 0 else 1))
                inplanes = planes * 4
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int = 768, heads: int = 12, mlp: int = 3072):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViTB16(nn.Module):
    def __init__(self, image_size: int = 224, dim: int = 768, depth: int = 12):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, 16, 16)
        n = (image_size // 16) ** 2
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, n + 1, dim).normal_(std=0.02))
        self.layers = nn.Sequential(*[EncoderBlock(dim) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.ln(self.layers(x))[:, 0]


def backbone(name: str, image_size: int = 224):
    """(module without its head, feature dim, where it came from)."""
    try:
        import torchvision
        net = getattr(torchvision.models, name)(weights=None)
        if name == "resnet50":
            dim, net.fc = net.fc.in_features, nn.Identity()
        else:
            dim, net.heads = net.hidden_dim, nn.Identity()
        return net, dim, "torchvision " + torchvision.__version__
    except ImportError:
        return (ResNet50(), 2048, "bench/gpu/models.py") if name == "resnet50" else (ViTB16(image_size), 768,
                                                                                      "bench/gpu/models.py")
