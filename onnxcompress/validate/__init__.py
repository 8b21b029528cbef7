
from onnxcompress._public import make_callable  # noqa: E402

make_callable(__name__)  # `onnxcompress.validate(...)` stays the public function after this import
