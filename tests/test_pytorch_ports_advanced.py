"""PyTorch's neural_style_tutorial.py (advanced_source/), dcgan_faces_tutorial.py and translation_transformer.py
(beginner_source/) of pytorch/tutorials, ported to xpnet as a PyTorch user writes them first, each against the
tutorial's own classes and loop run by torch in float64 from the same initial weights; and what tripped on the way.
No downloads: tiny random images stand in for the style and content pictures and for CelebA (16 x 16 instead of
64 x 64, one generator and one discriminator stage fewer, widths shrunk), and short random token sequences with
padding for Multi30k; a random tiny conv stack stands in for vgg19."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, what=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy() if hasattr(theirs, "detach") else theirs, **TOL,
                               err_msg=what)


def _same_state(ours, theirs, what):
    state = theirs.state_dict()
    for name, value in xn.torch_state_dict(ours).items():
        if not name.endswith("num_batches_tracked"):                   # PyTorch counts it, unused at momentum 0.1
            _close(value, state[name], f"{what}: {name}")


# ---- beginner_source/dcgan_faces_tutorial.py: the whole G/D training loop ----

NZ, NGF, NDF, NC = 4, 4, 4, 3  # the tutorial's nz, ngf, ndf (100, 64, 64) shrunk; nc = 3 kept


class Generator(xn.Model):
    """The tutorial's Generator, one ConvTranspose2d stage fewer: (N, nz, 1, 1) -> (N, nc, 16, 16) in [-1, 1]."""

    def __init__(self, ngpu):
        super().__init__()
        self.ngpu = ngpu
        self.main = xn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False),       # (NGF*2) x 4 x 4
            nn.BatchNorm(NGF * 2),                                     # nn.BatchNorm2d: its name says so
            nn.ReLU(),                                                 # nn.ReLU(True): refused, saying why
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False),     # NGF x 8 x 8
            nn.BatchNorm(NGF),
            nn.ReLU(),
            nn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False),          # NC x 16 x 16
            nn.Tanh())

    def forward(self, input, train=True):
        return self.main(input)

    def backward(self, dy):
        return self.main.backward(dy)


class Discriminator(xn.Model):
    """The tutorial's Discriminator, one stage fewer: (N, nc, 16, 16) -> (N, 1, 1, 1) probabilities."""

    def __init__(self, ngpu):
        super().__init__()
        self.ngpu = ngpu
        self.main = xn.Sequential(
            nn.Conv2d(NC, NDF, 4, 2, 1, bias=False),                   # NDF x 8 x 8
            nn.LeakyReLU(0.2),                                         # inplace=True: refused, saying why
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False),              # (NDF*2) x 4 x 4
            nn.BatchNorm(NDF * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid())

    def forward(self, input, train=True):
        return self.main(input)

    def backward(self, dy):
        return self.main.backward(dy)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        xn.init.normal_(m.weight, 0.0, 0.02)                           # nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        xn.init.normal_(m.weight, 1.0, 0.02)
        xn.init.constant_(m.bias, 0)


def _torch_dcgan(torch):
    """The tutorial's Generator and Discriminator as written there, the same stage fewer."""
    tn = torch.nn

    class TorchGenerator(tn.Module):
        def __init__(self):
            super().__init__()
            self.main = tn.Sequential(
                tn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False), tn.BatchNorm2d(NGF * 2), tn.ReLU(True),
                tn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), tn.BatchNorm2d(NGF), tn.ReLU(True),
                tn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False), tn.Tanh())

        def forward(self, input):
            return self.main(input)

    class TorchDiscriminator(tn.Module):
        def __init__(self):
            super().__init__()
            self.main = tn.Sequential(
                tn.Conv2d(NC, NDF, 4, 2, 1, bias=False), tn.LeakyReLU(0.2, inplace=True),
                tn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), tn.BatchNorm2d(NDF * 2),
                tn.LeakyReLU(0.2, inplace=True), tn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False), tn.Sigmoid())

        def forward(self, input):
            return self.main(input)

    return TorchGenerator().double(), TorchDiscriminator().double()


def test_the_dcgan_training_loop_trains_generator_and_discriminator_as_pytorchs():
    """Three iterations of the tutorial's loop: D's two backwards (real, then ``fake.detach()``) before its Adam
    step, G's loss through the updated D into G (``errG.backward()``), the statistics D(x), D(G(z)) and the
    fixed noise sampled under no_grad in training mode (BatchNorm's running statistics move, as PyTorch's): every
    loss, statistic, weight and running statistic equal to torch's in float64."""
    torch = _torch()
    netG, netD = Generator(0).to(dtype="float64"), Discriminator(0).to(dtype="float64")
    assert netG.apply(weights_init) is netG and netD.apply(weights_init) is netD
    their_G, their_D = _torch_dcgan(torch)
    their_G.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in xn.torch_state_dict(netG).items()},
                            strict=False)
    their_D.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in xn.torch_state_dict(netD).items()},
                            strict=False)
    criterion, their_criterion = xn.losses.BCELoss(), torch.nn.BCELoss()
    optimizerD = xn.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = xn.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    their_optD = torch.optim.Adam(their_D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    their_optG = torch.optim.Adam(their_G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    fixed_noise = rng.standard_normal((4, NZ, 1, 1))
    real_label, fake_label = 1., 0.

    def ours(real_cpu, noise):
        netD.zero_grad()
        b_size = real_cpu.shape[0]
        label = np.full((b_size,), real_label)                         # torch.full((b_size,), real_label, ...)
        output = netD(real_cpu).reshape(-1)                            # .view(-1)
        errD_real = criterion(output, label)
        netD.backward(np.reshape(criterion.backward(), (-1, 1, 1, 1)))  # errD_real.backward()
        D_x = output.mean().item()
        fake = netG(noise)
        label.fill(fake_label)
        output = netD(fake).reshape(-1)                                # netD(fake.detach()): the dx is left unused
        errD_fake = criterion(output, label)
        netD.backward(np.reshape(criterion.backward(), (-1, 1, 1, 1)))
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        netG.zero_grad()
        label.fill(real_label)
        output = netD(fake).reshape(-1)
        errG = criterion(output, label)
        netG.backward(netD.backward(np.reshape(criterion.backward(), (-1, 1, 1, 1))))   # errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        with xn.no_grad():
            sample = netG(fixed_noise)
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2, sample

    def theirs(real_cpu, noise):
        their_D.zero_grad()
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float64)
        output = their_D(real_cpu).view(-1)
        errD_real = their_criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        fake = their_G(noise)
        label.fill_(fake_label)
        output = their_D(fake.detach()).view(-1)
        errD_fake = their_criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        their_optD.step()
        their_G.zero_grad()
        label.fill_(real_label)
        output = their_D(fake).view(-1)
        errG = their_criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        their_optG.step()
        with torch.no_grad():
            sample = their_G(torch.from_numpy(fixed_noise)).detach()
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2, sample

    for _ in range(3):
        real, noise = rng.uniform(-1, 1, (4, NC, 16, 16)), rng.standard_normal((4, NZ, 1, 1))
        mine, their = ours(real, noise), theirs(torch.from_numpy(real), torch.from_numpy(noise))
        np.testing.assert_allclose(mine[:5], their[:5], **TOL)
        _close(mine[5], their[5], "netG(fixed_noise)")
    _same_state(netG, their_G, "netG")
    _same_state(netD, their_D, "netD")
