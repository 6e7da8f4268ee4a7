"""RocketMQ 4.9.8's plain ACL: AccessKey/SecretKey request signatures and plain_acl.yml rules."""
