#!/bin/sh
# iipsrv-ts started by spawn-fcgi: spawn-fcgi opens the listening socket, then runs iipsrv with
# it as fd 0. Put nginx (examples/nginx/iipsrv.conf, fastcgi_pass 127.0.0.1:9000) in front.
#
#   apt-get install spawn-fcgi
#   sh iipsrv-spawn-fcgi.sh
#
# -n keeps spawn-fcgi in the foreground and replaces it by iipsrv (for systemd, runit,
# daemontools); without it spawn-fcgi starts iipsrv in the background and returns. iipsrv runs
# its own worker processes (--workers N, by default one per CPU core): no -F needed.
# As root, add -u www-data -g www-data to run iipsrv as an unprivileged user.

# iipsrv's settings are environment variables (see README.md).
export FILESYSTEM_PREFIX="/var/www/images/"
export URI_MAP="iiif=>IIIF iip=>IIP deepzoom=>DeepZoom zoomify=>Zoomify"
export VERBOSITY="1"
export LOGFILE="/var/log/iipsrv/iipsrv.log"
export MEMCACHED_SERVERS="localhost:11211"

exec spawn-fcgi -n -a 127.0.0.1 -p 9000 -- /usr/local/bin/iipsrv
