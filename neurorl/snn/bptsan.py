"""BPT-SAN: dendritic inter-layer connections and lateral interactions (Zhang, Wang, Zhang, Xu, arXiv:2403.20163).

BPT-SAN replaces the weighted sum between layers by nonlinear dendritic trees. It also adds
lateral interactions between adjacent neurons of a layer to the membrane equation, keeps
population coding at the input, and trains with TD3 or SAC. The paper's code is not public, so every equation
below is this implementation's reading of that description:

    b_{j,k,t} = Σ_i W_{jk,i}·s_{i,t} + w_{jk}          (K dendritic branches per neuron j; spike inputs)
    I_{j,t}   = Σ_k g_{jk}·tanh(b_{j,k,t}) + g_j        (branch nonlinearity, then the soma's weighted sum)
    v_{j,t}   = neuron update with input I_{j,t} + l_j⁻·o_{j−1,t−1} + l_j⁺·o_{j+1,t−1}

Choices, none of which the paper fixes in public material:
* K = ``ActorSpec.branches`` (default 2) branches per neuron, each a weighted sum of the whole
  presynaptic layer; tanh as the branch nonlinearity (a zero-centred sigmoid, so branches can
  excite and inhibit); branch-to-soma weights g learned, initialised to 1 (a plain sum).
* Lateral interactions: each hidden neuron j receives the previous step's spikes of its two
  neighbours j − 1 and j + 1 (index order within the layer, no wrap-around) through two learned
  weights of its own. The weights start uniform in ±0.1, so lateral input starts well below the
  0.5 threshold. They enter the membrane voltage directly (after the current filter of ``clif``).
* Hidden layers get both mechanisms. The output populations get dendritic inputs but no lateral
  interactions, because neighbours across two action populations are not adjacent in any sense.
* Decoding is PopSAN's firing-rate population decoder; neurons follow ``ActorSpec.neuron``.

Energy accounting: the branch layer is an ``nn.Linear`` on spikes (ACs). The soma sums real-valued
branch outputs through a grouped ``nn.Conv1d`` (MACs, N·K per step). The lateral weights are a
grouped ``nn.Conv1d`` whose input contains each spike once per neighbour that receives it, so its
ACs equal the synaptic events. NOTE: the counter has no operation kind for the N·K tanh
evaluations per step, so they are not counted.

Gradient reach: at T = 1 no previous spike exists, so the lateral weights get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurorl.snn.actors import ActorHead, ActorSpec, register_actor
from neurorl.snn.decoding import CoveringConv1d, PopulationDecoder
from neurorl.snn.encoding import PopulationEncoder
from neurorl.snn.linear import Linear
from neurorl.snn.neurons import make_neuron

# Imported as a module, not by name: when ilcsan is imported first it imports actors, which imports
# this module while ilcsan is still initialising, so its classes are read at construction time.
from neurorl.snn import ilcsan  # noqa: E402  (isort: skip)

LATERAL_INIT = 0.1


class DendriticLayer(nn.Module):
    """Inter-layer connection through K nonlinear dendritic branches per neuron.

    Maps spikes [T, B, in_features] to somatic currents [T, B, out_features]; every step is
    computed in one batched product because the connection has no state.
    """

    def __init__(self, in_features: int, out_features: int, branches: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.branches = branches
        self.branch = Linear(in_features, out_features * branches)
        self.branch.input_kind = "spike"
        self.soma = CoveringConv1d(out_features, out_features, kernel_size=branches, groups=out_features)
        self.soma.input_kind = "dense"
        with torch.no_grad():
            self.soma.weight.fill_(1.0)
            self.soma.bias.zero_()

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        steps, batch = spikes.shape[0], spikes.shape[1]
        branch = self.branch(spikes.reshape(steps * batch, -1))
        dendrites = torch.tanh(branch).view(steps * batch, self.out_features, self.branches)
        return self.soma(dendrites).view(steps, batch, self.out_features)


class AdjacentLateral(nn.Module):
    """Lateral weights from neurons j − 1 and j + 1 to neuron j, two learned weights per neuron.

    The spikes [B, N] are rearranged to [B, N, 2], the left and right neighbour of each neuron
    (zero beyond the ends), and passed through a depthwise ``nn.Conv1d`` with kernel 2. Each spike
    then appears once for each neighbour that receives it, so the counter's AC count equals the
    number of synaptic events.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.conv = CoveringConv1d(size, size, kernel_size=2, groups=size, bias=False)
        self.conv.input_kind = "spike"
        nn.init.uniform_(self.conv.weight, -LATERAL_INIT, LATERAL_INIT)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        left = F.pad(spikes[:, :-1], (1, 0))
        right = F.pad(spikes[:, 1:], (0, 1))
        neighbours = torch.stack((left, right), dim=-1)
        return self.conv(neighbours).view(-1, self.size)


class BPTSpikingActor(ActorHead):
    """BPT-SAN actor: dendritic connections between layers, lateral interactions inside hidden layers."""

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        self.obs_dim = spec.obs_dim
        self.act_dim = spec.act_dim
        self.gaussian = spec.gaussian
        self.T = spec.T
        self.encoder = PopulationEncoder(spec.obs_dim, spec.pop_size, spike_mode=spec.encoder)

        sizes = [self.encoder.out_features, *spec.hidden]
        self.layers = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.layers.append(DendriticLayer(fan_in, fan_out, spec.branches))
            neuron = make_neuron(spec.neuron, spec.surrogate).neuron
            self.neurons.append(ilcsan.RecurrentNeuronLayer(neuron, AdjacentLateral(fan_out), target="membrane"))

        out_units = spec.out_dim * spec.out_pop_size
        self.output_layer = DendriticLayer(spec.hidden[-1], out_units, spec.branches)
        self.output_neurons = make_neuron(spec.neuron, spec.surrogate)
        self.decoder = PopulationDecoder(spec.out_dim, spec.out_pop_size)

    def pre_activation(self, obs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder(obs, self.T)
        for layer, neuron in zip(self.layers, self.neurons):
            spikes = neuron(layer(spikes))

        out_spikes = self.output_neurons(self.output_layer(spikes))
        return self.decoder(out_spikes.mean(dim=0))


register_actor("bptsan", BPTSpikingActor, spiking=True)
