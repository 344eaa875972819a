"""The original 2017 check, run in the deployment package: python3 -m unittest test_handler.

Its answers are the UCLA model's; a release serving another model sets
EXPECT_2017_ANSWERS=0 (test_package.py checks any model against R's own predict).
"""

import os
import unittest

import handler


@unittest.skipIf(
    os.environ.get("EXPECT_2017_ANSWERS") == "0",
    "the release serves a model not trained on the project's UCLA data",
)
class HandlerTest(unittest.TestCase):
    def test_pred_admit(self) -> None:
        self.assertIs(handler.pred_admit("800", "4", "1"), True)
        self.assertIs(handler.pred_admit("800", "4", "4"), False)


if __name__ == "__main__":
    unittest.main()
