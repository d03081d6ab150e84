"""The MVP program model's planners: which MVP programs each layer compiles to, following the
SDK kernels' program builders.

`plan_layer(graph, op)` returns a `LayerPlan`: whether the vendor's MVP kernels accept the layer
(and the reason when not), which kernel path runs it, and the programs it launches as
(Program, repeat count) pairs. Identical launches are counted, not materialised, so planning a
model takes milliseconds; `LayerPlan.launches()` yields every launch with its exact buffer
offsets and register values, in execution order, and `LayerPlan.cpu_work` lists what the kernel
computes on the CPU around them (clamp remainder, odd ADD/MUL element, Conv1D edge columns), so
the emulator executes exactly what the profiler prices.

Kernel facts (program structure, path choices, limits) come from the Silicon Labs MVP kernels
as shipped in MLTK 0.20 (the vendor simulator's build, with SL_MVP_OPTIMIZE_SPEED = 1: conv_2d
pre-scales its input to fp16 in a separate program); see ../shared/mvp/FACTS.md.

Two vendor-simulator quirks are modelled explicitly, because its reports show them:
- a fully_connected layer whose input depth exceeds 1024 (2048 if even) is logged as
  "weights_shape[1] (N) > M" even though the large-input path runs it on the MVP;
- a depthwise_conv_2d layer that only the optimized path can run is rejected at random
  ("Hardware limits exceeded"): Prepare checks the bias/scaler pointers' alignment before it has
  set them. The board runs such layers on the MVP.
In both cases `supported` is False (the vendor's verdict) while `runs_on_mvp` is True and the
programs are planned, so the layer's cycles are counted as the vendor simulator counts them.

Modules: `plan` (LayerPlan), `params` (LayerParams from the graph), `common` (pieces the kernels
share), one per operator family (`conv`, `depthwise`, `fully_connected`, `elementwise`, `pooling`,
`transpose_conv`), and `planner` (the entry point and Prepare's constants).
"""
from simulator.mvp_plan.depthwise import depthwise_paths
from simulator.mvp_plan.params import LayerParams, layer_params
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_plan.planner import MVP_OPCODES, plan_layer, prepare_constants

__all__ = ["LayerPlan", "LayerParams", "layer_params", "plan_layer", "prepare_constants", "MVP_OPCODES",
           "depthwise_paths"]
