"""The original 2017 check, run in the deployment package: python3 -m unittest test_handler."""

import unittest

import handler


class HandlerTest(unittest.TestCase):
    def test_pred_admit(self) -> None:
        self.assertIs(handler.pred_admit("800", "4", "1"), True)
        self.assertIs(handler.pred_admit("800", "4", "4"), False)


if __name__ == "__main__":
    unittest.main()
