#!/bin/sh
# Writes a deterministic pg_dump-like SQL script of N rows to standard output.
n=${1:-100000}
awk -v n="$n" 'BEGIN {
  print "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;"
  print "CREATE TABLE public.mahasiswa (id integer NOT NULL, nim text, nama text, ipk numeric(3,2), angkatan integer);"
  print "COPY public.mahasiswa (id, nim, nama, ipk, angkatan) FROM stdin;"
  for (i = 1; i <= n; i++)
    printf "%d\t%010d\tMahasiswa %d %s\t%d.%02d\t%d\n", i, 2000000000 + i * 7, i, substr("ABCDEFGHIJKLMNOPQRSTUVWXYZ", i % 26 + 1, 3), 2 + i % 2, (i * 37) % 100, 2015 + i % 10
  print "\\.\n\n-- PostgreSQL database dump complete"
}'
