"""The test Glance's client configuration with and without Keystone."""

from __future__ import annotations

import testtools
import yaml

from tripleo_elements.publish.testservers import KeystoneAuth, clouds_yaml

KS = KeystoneAuth(auth_url="http://127.0.0.1:5000/v3", service_user="glance",
                  service_password="svc-pw", user="admin",
                  password="right-pw", project="admin")


class CloudsYamlTest(testtools.TestCase):

    def test_no_auth(self) -> None:
        doc = yaml.safe_load(clouds_yaml("c", "http://127.0.0.1:9292"))
        self.assertEqual({"auth_type": "none",
                          "auth": {"endpoint": "http://127.0.0.1:9292"},
                          "image_endpoint_override": "http://127.0.0.1:9292"},
                         doc["clouds"]["c"])

    def test_keystone_password_and_its_wrong_twin(self) -> None:
        right = yaml.safe_load(clouds_yaml("c", "http://e", KS))["clouds"]["c"]
        self.assertEqual("password", right["auth_type"])
        self.assertEqual({"auth_url": "http://127.0.0.1:5000/v3",
                          "username": "admin", "password": "right-pw",
                          "project_name": "admin",
                          "user_domain_name": "Default",
                          "project_domain_name": "Default"}, right["auth"])
        wrong = yaml.safe_load(clouds_yaml("c", "http://e", KS,
                                           password="nope"))["clouds"]["c"]
        self.assertEqual("nope", wrong["auth"]["password"])
        self.assertEqual(dict(right, auth=dict(right["auth"],
                                               password="nope")), wrong)

    def test_repr_holds_no_password(self) -> None:
        text = repr(KS) + str(KS)
        self.assertNotIn("right-pw", text)
        self.assertNotIn("svc-pw", text)
