# One image for every CCM service; CCM_APP picks which one runs.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY tools ./tools
COPY libs ./libs
COPY apps ./apps
RUN node tools/build.mjs && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production CCM_HTTP_HOST=0.0.0.0 CCM_HTTP_PORT=8080
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER node
EXPOSE 8080
# Exec form through sh so CCM_APP expands; `exec` makes node PID 1's child-free successor and receives SIGTERM.
CMD ["sh", "-c", "exec node --enable-source-maps dist/apps/${CCM_APP:?set CCM_APP}/src/main.js"]
