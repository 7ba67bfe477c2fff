#include "xfer/spec/catalog.hpp"

namespace xfer::spec {

namespace {
constexpr std::array<double, 3> kImagenetMean{0.485, 0.456, 0.406};
constexpr std::array<double, 3> kImagenetStd{0.229, 0.224, 0.225};
}  // namespace

// Top-1 values are the ones in the paper's table (the libraries' published numbers). GMACs are the libraries'
// published figures rescaled to 224x224 (Inception-ResNet-v2 and PNASNet are published at 299 and 331); they only
// order and size the work. Normalisation: the paper normalises every model with ImageNet mean/std (timm's
// Inception-ResNet-v2 and PNASNet default to 0.5/0.5 — override `mean`/`std` in a [[model]] entry to use those).
const std::vector<CatalogModel>& paper_models() {
  static const std::vector<CatalogModel> kModels = {
      {"alexnet", "AlexNet", "torchvision", "classifier[-1]", 56.5, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:AlexNet_Weights.IMAGENET1K_V1", 0.71, 4096},
      {"squeezenet1_1", "SqueezeNet 1.1", "torchvision", "classifier[1]", 58.2, 0, 1.0, kImagenetMean,
       kImagenetStd, "torchvision:SqueezeNet1_1_Weights.IMAGENET1K_V1", 0.35, 512},
      {"shufflenet_v2_x0_5", "ShuffleNetV2 x0.5", "torchvision", "fc", 60.6, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1", 0.04, 1024},
      {"mobilenet_v3_small", "MobileNetV3-Small", "torchvision", "classifier[-1]", 67.7, 0, 1.0, kImagenetMean,
       kImagenetStd, "torchvision:MobileNet_V3_Small_Weights.IMAGENET1K_V1", 0.06, 1024},
      {"mnasnet0_5", "MnasNet 0.5", "torchvision", "classifier[-1]", 67.7, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:MNASNet0_5_Weights.IMAGENET1K_V1", 0.10, 1280},
      {"shufflenet_v2_x1_0", "ShuffleNetV2 x1.0", "torchvision", "fc", 69.4, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1", 0.14, 1024},
      {"vgg13_bn", "VGG13-BN", "torchvision", "classifier[-1]", 71.6, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:VGG13_BN_Weights.IMAGENET1K_V1", 11.31, 4096},
      {"deit_tiny_patch16_224", "DeiT-Tiny", "timm", "head", 72.2, 224, 1.0, kImagenetMean, kImagenetStd,
       "timm:deit_tiny_patch16_224.fb_in1k", 1.26, 192},
      {"vgg16_bn", "VGG16-BN", "torchvision", "classifier[-1]", 73.4, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:VGG16_BN_Weights.IMAGENET1K_V1", 15.47, 4096},
      {"densenet121", "DenseNet-121", "torchvision", "classifier", 74.4, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:DenseNet121_Weights.IMAGENET1K_V1", 2.83, 1024},
      {"resnet50", "ResNet-50", "torchvision", "fc", 76.1, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:ResNet50_Weights.IMAGENET1K_V1", 4.09, 2048},
      {"resnext50_32x4d", "ResNeXt-50 32x4d", "torchvision", "fc", 77.6, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:ResNeXt50_32X4D_Weights.IMAGENET1K_V1", 4.23, 2048},
      {"efficientnet_b0", "EfficientNet-B0", "timm", "classifier", 77.7, 0, 1.0, kImagenetMean, kImagenetStd,
       "timm:efficientnet_b0.ra_in1k", 0.40, 1280},
      {"resnet152", "ResNet-152", "torchvision", "fc", 78.3, 0, 1.0, kImagenetMean, kImagenetStd,
       "torchvision:ResNet152_Weights.IMAGENET1K_V1", 11.51, 2048},
      {"deit_small_patch16_224", "DeiT-Small", "timm", "head", 79.9, 224, 1.0, kImagenetMean, kImagenetStd,
       "timm:deit_small_patch16_224.fb_in1k", 4.61, 384},
      {"inception_resnet_v2", "Inception-ResNet-v2", "timm", "classif", 80.5, 0, 1.0, kImagenetMean,
       kImagenetStd, "timm:inception_resnet_v2.tf_in1k", 7.40, 1536},
      {"convnext_tiny", "ConvNeXt-Tiny", "timm", "head.fc", 82.1, 0, 1.0, kImagenetMean, kImagenetStd,
       "timm:convnext_tiny.fb_in1k", 4.47, 768},
      {"pnasnet5large", "PNASNet-5-Large", "timm", "last_linear", 82.8, 0, 1.0, kImagenetMean, kImagenetStd,
       "timm:pnasnet5large.tf_in1k", 11.40, 4320},
      {"efficientnet_b4", "EfficientNet-B4", "timm", "classifier", 83.4, 0, 1.0, kImagenetMean, kImagenetStd,
       "timm:efficientnet_b4.ra2_in1k", 1.55, 1792},
  };
  return kModels;
}

const CatalogModel* find_catalog_model(const std::string& name) {
  for (const auto& m : paper_models())
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace xfer::spec
