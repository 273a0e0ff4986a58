"""A minimal onnxruntime runtime for MLServer (MLServer ships none).

Imported by MLServer through `model-settings.json`:
`"implementation": "mlserver_onnx.OnnxRuntimeModel"`, `"parameters": {"uri": "model.onnx"}`.
It runs in the benchmark's own MLServer virtualenv, never in the project's.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntimeModel(MLModel):
    """One onnxruntime session, one thread: the same threading as the bare handler."""

    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._output_names = [output.name for output in self._session.get_outputs()]
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {item.name: NumpyCodec.decode_input(item) for item in payload.inputs}
        results = self._session.run(self._output_names, feeds)
        outputs = [
            NumpyCodec.encode_output(name, array)
            for name, array in zip(self._output_names, results, strict=True)
        ]
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)
